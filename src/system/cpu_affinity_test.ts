import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { allowedCpus, cpuForThread, cpusOfMask, maskOfCpu } from "./cpu_affinity.ts";

Deno.test("cpusOfMask reads every set bit, byte by byte, lowest bit first", () => {
  assertEquals(cpusOfMask(new Uint8Array([0b101, 0, 0b1000_0000])), [0, 2, 23]);
  assertEquals(cpusOfMask(new Uint8Array(128)), []);
});

Deno.test("maskOfCpu sets one bit and refuses what is not a CPU number", () => {
  assertEquals(cpusOfMask(maskOfCpu(0)), [0]);
  assertEquals(cpusOfMask(maskOfCpu(13)), [13]);
  assertEquals(cpusOfMask(maskOfCpu(1023)), [1023]);
  throws(() => maskOfCpu(-1), /no such CPU: -1/);
  throws(() => maskOfCpu(1024), /no such CPU: 1024/);
  throws(() => maskOfCpu(1.5), /no such CPU: 1.5/);
});

Deno.test("cpuForThread gives each thread the allowed CPUs in turn", () => {
  assertEquals([0, 1, 2, 3].map((i) => cpuForThread([2, 5], i)), [2, 5, 2, 5]);
  assertEquals(cpuForThread([7], 3), 7);
  throws(() => cpuForThread([], 0), /no CPU/);
});

// Pinning changes the calling thread for good, so it runs in a worker of its own.
async function inWorker(
  cpu: number,
): Promise<{ before: number[]; after: number[]; error?: string }> {
  const module = new URL("./cpu_affinity.ts", import.meta.url).href;
  const code = `
    import { allowedCpus, pinThisThread } from "${module}";
    const before = allowedCpus();
    let error;
    try { pinThisThread(${cpu}); } catch (e) { error = e.message; }
    self.postMessage({ before, after: allowedCpus(), error });
  `;
  const url = URL.createObjectURL(new Blob([code], { type: "application/javascript" }));
  const worker = new Worker(url, { type: "module" });
  try {
    return await new Promise((resolve, reject) => {
      worker.onmessage = (e) => resolve(e.data);
      worker.onerror = (e) => {
        e.preventDefault();
        reject(new Error(e.message));
      };
    });
  } finally {
    worker.terminate();
    URL.revokeObjectURL(url);
  }
}

Deno.test("pinThisThread keeps the calling thread, and only it, to one CPU", async () => {
  const mine = allowedCpus();
  const last = mine[mine.length - 1];
  const r = await inWorker(last);
  assertEquals(r.before, mine);
  assertEquals(r.after, [last]);
  assertEquals(r.error, undefined);
  // The test's own thread is untouched.
  assertEquals(allowedCpus(), mine);
});

Deno.test("pinThisThread to a CPU the thread may not use fails with the reason, unchanged", async () => {
  const mine = allowedCpus();
  // The highest number a mask holds: no machine this runs on has it.
  const r = await inWorker(1023);
  assertEquals(r.error, "cannot keep the thread to CPU 1023: EINVAL (Invalid argument)");
  assertEquals(r.after, mine);
});
