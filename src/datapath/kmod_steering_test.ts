import { deepStrictEqual as assertEquals, rejects } from "node:assert/strict";
import { kmodLoaded, KmodSteering, renderKmodFiles } from "./kmod_steering.ts";
import { labSpec } from "./_steering_spec.ts";
import { UDP_FIRST_MARK } from "./nft_nat.ts";

const spec = labSpec({
  queue: 4,
  udpPorts: [53, 5353],
  gports: [16000, 16001],
  gport: 16001,
});

/** A directory shaped like the module's files, for tests without the module. */
async function fakeModule() {
  const dir = await Deno.makeTempDir();
  const paths = { proc: `${dir}/proc`, start: `${dir}/start` };
  await Deno.mkdir(paths.proc);
  await Deno.writeTextFile(paths.start, "0\n");
  await Deno.writeTextFile(`${paths.proc}/gport`, "16000\n");
  await Deno.writeTextFile(`${paths.proc}/real_ip`, "192.168.0.10\n");
  const read = (name: string) => Deno.readTextFile(`${paths.proc}/${name}`).then((t) => t.trim());
  return { dir, paths, read };
}

Deno.test("renderKmodFiles() writes the selection in the module's formats", () => {
  assertEquals(renderKmodFiles(spec), {
    relay_ip: "198.51.100.1",
    real_ip: "203.0.113.10",
    udp_ports: "53,5353",
    tcp_ports: "80",
    gport: "16001",
    first_mark: String(UDP_FIRST_MARK),
    queue: "4",
  });
  assertEquals(renderKmodFiles({ ...spec, udpPorts: [] }).first_mark, "0");
});

Deno.test("KmodSteering.install() writes the files, then start=1; remove() writes start=0", async () => {
  const m = await fakeModule();
  try {
    const steering = new KmodSteering(m.paths);
    assertEquals(kmodLoaded(m.paths), true);
    await steering.install(spec);
    assertEquals([await m.read("udp_ports"), await m.read("first_mark")], ["53,5353", "19283"]);
    assertEquals((await Deno.readTextFile(m.paths.start)).trim(), "1");
    assertEquals(await steering.observe(), { gport: 16001, realIp: "203.0.113.10", started: true });
    await steering.update({ ...spec, udpPorts: [53] });
    assertEquals(await m.read("udp_ports"), "53");
    await steering.remove();
    assertEquals((await Deno.readTextFile(m.paths.start)).trim(), "0");
  } finally {
    await Deno.remove(m.dir, { recursive: true });
  }
});

Deno.test("KmodSteering refuses kernel_nat, which the module's hooks cannot select", async () => {
  const m = await fakeModule();
  try {
    await rejects(new KmodSteering(m.paths).install({ ...spec, kernelNat: true }), /kernel_nat/);
  } finally {
    await Deno.remove(m.dir, { recursive: true });
  }
});
