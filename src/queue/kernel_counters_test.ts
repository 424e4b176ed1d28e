import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { parseKernelQueues, readKernelQueue } from "./kernel_counters.ts";

Deno.test("parseKernelQueues reads each bound queue's drops and id sequence", () => {
  const text = "    0   4242     3 2 65531 1049063   17 2000123 1\n" +
    "    7 -12345     0 2 65531       0    0       5 1\n" +
    "garbage line\n";
  assertEquals(parseKernelQueues(text), [
    {
      queue: 0,
      portId: 4242,
      waiting: 3,
      queueDropped: 1049063,
      userDropped: 17,
      idSequence: 2000123,
    },
    { queue: 7, portId: -12345, waiting: 0, queueDropped: 0, userDropped: 0, idSequence: 5 },
  ]);
});

Deno.test("readKernelQueue: undefined for a queue not bound or a missing file", async () => {
  const file = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(file, "    3   99     0 2 65531 4 5 6 1\n");
    assertEquals(readKernelQueue(3, file)?.queueDropped, 4);
    assertEquals(readKernelQueue(0, file), undefined);
    assertEquals(readKernelQueue(0, `${file}.missing`), undefined);
  } finally {
    await Deno.remove(file);
  }
});
