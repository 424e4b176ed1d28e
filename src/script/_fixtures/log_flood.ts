/** Test fixture: a timer that logs megabytes; accepts every packet. */
setInterval(() => {
  for (let i = 0; i < 200; i++) console.log("x".repeat(2000));
}, 1);

/** Accepts. */
export function target(): void {}
