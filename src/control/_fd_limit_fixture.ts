// A control server at the fd limit, for server_test.ts (run with a low `ulimit -n`): listens
// on the path in argv[0], takes every free descriptor, says "full", gives them back on the
// first line of stdin, says "free", and on the second prints its exhaustion counters and ends.
import { ControlServer } from "./server.ts";

const server = await ControlServer.listen(Deno.args[0], () => Promise.resolve("pong"));
const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
const held: Deno.FsFile[] = [];
try {
  for (;;) held.push(Deno.openSync("/dev/null"));
} catch {
  // EMFILE: every descriptor is taken.
}
console.log("full");
await lines.read();
for (const f of held) f.close();
console.log("free");
await lines.read();
console.log(JSON.stringify(server.fdExhaustion));
await server.close();
