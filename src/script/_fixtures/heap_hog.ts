/** Test fixture: a timer that allocates on the V8 heap without end; accepts every packet. */
const big: number[][] = [];
setInterval(() => big.push(new Array(4e6).fill(1.5)), 20);

/** Accepts. */
export function target(): void {}
