/**
 * Test fixture: a relay thread that answers like relay_thread.ts, then fails with an uncaught
 * error a moment after it was asked to listen.
 *
 * @module
 */

/// <reference lib="deno.worker" />

self.onmessage = (e: MessageEvent<{ id: number; op: string }>) => {
  const { id, op } = e.data;
  self.postMessage({ id, ok: true, value: undefined });
  if (op === "listen") {
    setTimeout(() => {
      throw new Error("boom");
    }, 20);
  }
};
