/** Test fixture: tries to start a spinning Worker; logs whether it could; accepts. */
try {
  new Worker("data:application/javascript,for(;;){}", { type: "module" });
  console.log("worker: started");
} catch (e) {
  console.log(`worker: refused (${(e as Error).message})`);
}

/** Accepts. */
export function target(): void {}
