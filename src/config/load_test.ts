import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { loadConfig } from "./load.ts";

async function withFile(text: string, fn: (path: string) => Promise<void>): Promise<void> {
  const path = await Deno.makeTempFile({ suffix: ".toml" });
  try {
    await Deno.writeTextFile(path, text);
    await fn(path);
  } finally {
    await Deno.remove(path);
  }
}

Deno.test("loadConfig() reads a TOML file and lets flags override it", async () => {
  await withFile('real_ip = "203.0.113.10"\ngport = 16001\nudp_ports = [53, 5353]\n', async (f) => {
    const r = await loadConfig({ file: f, flags: { gport: 16002, queue: undefined } });
    if (!r.ok) throw new Error(r.errors.join());
    assertEquals([r.config.real_ip, r.config.gport, r.config.udp_ports], [
      "203.0.113.10",
      16002,
      [53, 5353],
    ]);
  });
});

Deno.test("loadConfig() reports a TOML syntax error with the file name", async () => {
  await withFile("gport = = 1\n", async (f) => {
    const r = await loadConfig({ file: f });
    assert(!r.ok && r.errors[0].startsWith(`config file ${f}:`));
  });
});

Deno.test("loadConfig() reports a missing file", async () => {
  const r = await loadConfig({ file: "/nonexistent/krelay.toml" });
  assert(!r.ok && r.errors[0].includes("/nonexistent/krelay.toml"));
});

Deno.test("loadConfig() names the bad key from the file", async () => {
  await withFile('gport = "x"\n', async (f) => {
    const r = await loadConfig({ file: f });
    assertEquals(r.ok ? [] : r.errors, [`gport: must be a number (from flags or ${f})`]);
  });
});
