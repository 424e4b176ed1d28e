/** Test fixture: a timer that never returns; accepts every packet (when it gets the chance). */
setTimeout(() => {
  // deno-lint-ignore no-empty
  for (;;) {}
}, 100);

/** Accepts. */
export function target(): void {}
