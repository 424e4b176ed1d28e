/** Test fixture: a timer that throws once after the script loaded; accepts every packet. */
setTimeout(() => {
  throw new Error("timer boom");
}, 10);

/** Accepts. */
export function target(): void {}
