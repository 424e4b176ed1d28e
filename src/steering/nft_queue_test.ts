import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { ackError, queueRuleBatch } from "./nft_queue.ts";

/** The messages of a netlink batch: type, flags and the nfgenmsg family. */
function messages(batch: Uint8Array) {
  const view = new DataView(batch.buffer);
  const out: { type: number; flags: number; family: number; len: number }[] = [];
  for (let at = 0; at < batch.length;) {
    const len = view.getUint32(at, true);
    out.push({
      type: view.getUint16(at + 4, true),
      flags: view.getUint16(at + 6, true),
      family: batch[at + 16],
      len,
    });
    at += len;
  }
  return out;
}

Deno.test("queueRuleBatch() is one NEWRULE inserting the NFQUEUE target, between batch begin and end", () => {
  const batch = queueRuleBatch("krelay", "to_queue", 7);
  const [begin, rule, end] = messages(batch);
  assertEquals([begin.type, end.type], [0x10, 0x11]);
  // NFT_MSG_NEWRULE of nftables (subsystem 10), IPv4, asking for an ack; no NLM_F_APPEND: at
  // the chain's head, before its accept.
  assertEquals([rule.type, rule.family, rule.flags], [0x0a06, 2, 0x1 | 0x4 | 0x400]);
  const text = new TextDecoder().decode(batch);
  for (const s of ["krelay\0", "to_queue\0", "target\0", "NFQUEUE\0"]) assert(text.includes(s), s);
  // struct xt_NFQ_info_v3: queue 7, one queue, bypass; at the end of the rule's message.
  const ruleEnd = begin.len + rule.len;
  assertEquals([...batch.subarray(ruleEnd - 8, ruleEnd)], [7, 0, 1, 0, 1, 0, 0, 0]);
});

Deno.test("queueRuleBatch() for the ip6 table: the same rule, family IPv6", () => {
  const [, rule] = messages(queueRuleBatch("krelay", "to_queue", 7, 1, "ip6"));
  assertEquals([rule.type, rule.family], [0x0a06, 10]);
  const [, rule4] = messages(queueRuleBatch("krelay", "to_queue", 7));
  assertEquals(rule.len, rule4.len);
});

Deno.test("ackError() reads the errno of the kernel's answer", () => {
  const answer = (errno: number) => {
    const b = new Uint8Array(36);
    const v = new DataView(b.buffer);
    v.setUint32(0, 36, true);
    v.setUint16(4, 2, true);
    v.setInt32(16, -errno, true);
    return b;
  };
  assertEquals(ackError(answer(0)), 0);
  assertEquals(ackError(answer(2)), 2);
  assertEquals(ackError(new Uint8Array(4)), undefined);
});
