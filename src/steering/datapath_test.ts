import { deepStrictEqual as assertEquals, match } from "node:assert/strict";
import { datapathRefusal, kmodDefaults, useKmod } from "./datapath.ts";

Deno.test("useKmod() and datapathRefusal() follow the module's /proc directory", async () => {
  const dir = await Deno.makeTempDir();
  const paths = { proc: `${dir}/proc`, start: `${dir}/start` };
  try {
    assertEquals([useKmod("auto", paths), useKmod("iptables", paths)], [false, false]);
    match(datapathRefusal("kmod", paths)!, /krelay.ko is not loaded/);
    assertEquals(datapathRefusal("auto", paths), undefined);
    await Deno.mkdir(paths.proc);
    await Deno.writeTextFile(`${paths.proc}/gport`, "16001\n");
    await Deno.writeTextFile(`${paths.proc}/real_ip`, "203.0.113.10\n");
    assertEquals([useKmod("auto", paths), useKmod("iptables", paths)], [true, false]);
    assertEquals(datapathRefusal("kmod", paths), undefined);
    assertEquals(await kmodDefaults(paths), { gport: 16001, real_ip: "203.0.113.10" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
