// The checksum of a 64 KiB GSO super-packet: krelay computes it for every rewritten segment
// whose checksum the kernel left partial. Baseline: the plain 16-bit loop, in the same run.
import { internetChecksum } from "./checksum.ts";

const bytes = new Uint8Array(65536).map((_, i) => (i * 31 + 7) & 0xff);

function plain(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += (b[i] << 8) | b[i + 1];
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

Deno.bench({ name: "64 KiB, 16-bit loop", group: "checksum", baseline: true }, () => {
  plain(bytes);
});

Deno.bench({ name: "64 KiB, internetChecksum (32-bit words)", group: "checksum" }, () => {
  internetChecksum(bytes, 0, bytes.length);
});
