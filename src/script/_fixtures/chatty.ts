/** Test fixture: logs 10 lines every 10 ms (1,000 a second, within the output limit); accepts. */
let n = 0;
setInterval(() => {
  for (let i = 0; i < 10; i++) console.log(`line ${n++}`);
}, 10);

/** Accepts. */
export function target(): void {}
