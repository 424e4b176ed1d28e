import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { kmodLoaded, KmodSteering, renderKmodFiles } from "./kmod.ts";
import { labSpec } from "./_steering_spec.ts";

const spec = labSpec({
  queue: 4,
  udpPorts: [53, 5353],
  tcpPorts: [80, 8080],
  scriptedUdpPorts: [5353],
  scriptedTcpPorts: [8080],
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

Deno.test("renderKmodFiles() selects the marked first packets and the scripted services", () => {
  assertEquals(renderKmodFiles(spec), {
    relay_ip: "198.51.100.1",
    real_ip: "203.0.113.10",
    udp_ports: "5353",
    tcp_ports: "8080",
    first_mark: String(0x4b53),
    gport: "16001",
    queue: "4",
  });
  // Every UDP service scripted: no first packet is the kernel's to learn from.
  const all = renderKmodFiles({ ...spec, scriptedUdpPorts: [53, 5353], scriptedTcpPorts: [] });
  assertEquals([all.first_mark, all.udp_ports, all.tcp_ports], ["0", "53,5353", ""]);
});

Deno.test("KmodSteering.install() writes the files, then start=1; remove() writes start=0", async () => {
  const m = await fakeModule();
  try {
    const steering = new KmodSteering(m.paths);
    assertEquals(kmodLoaded(m.paths), true);
    await steering.install(spec);
    assertEquals([await m.read("udp_ports"), await m.read("first_mark")], ["5353", "19283"]);
    assertEquals((await Deno.readTextFile(m.paths.start)).trim(), "1");
    assertEquals(await steering.observe(), { gport: 16001, realIp: "203.0.113.10", started: true });
    await steering.update({ ...spec, scriptedUdpPorts: [] });
    assertEquals(await m.read("udp_ports"), "");
    await steering.remove();
    assertEquals((await Deno.readTextFile(m.paths.start)).trim(), "0");
  } finally {
    await Deno.remove(m.dir, { recursive: true });
  }
});
