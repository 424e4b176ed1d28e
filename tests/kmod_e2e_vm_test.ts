// krelay with --datapath kmod, end to end inside the VM: krelay.ko loaded, a lab of
// namespaces with dnsmasq and nginx, krelay run from the repository (over 9p) with Deno, dig
// and curl through the relay on the default path (the module queues only first packets),
// IPv6 dig and curl steered by krelay's rules beside the module's IPv4 hooks, half-close and
// resets both ways (tests/support/tcp_edges.ts), a
// packet script loaded and unloaded on TCP 80 (the module queues its segments, then not),
// the module's NAT table read by getsockopt, nothing relayed with start=0, relaying again after
// `krelay start`. Skipped, with the reason printed, where the VM
// cannot run. A few minutes under TCG.

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { buildKmod, dmesgProblems, REPO, runVm, vmKernel, vmMissing } from "./vm/vm.ts";
import { testOrSkip } from "./support/skip.ts";

const why = await vmMissing();

const CHECKS = [
  "kmod_started_by_krelay",
  "no_iptables_steering",
  "dig_through_kmod",
  "dns_sees_client",
  "nat_table_over_getsockopt",
  "curl_through_kmod",
  "http_sees_client",
  "dig6_beside_kmod",
  "curl6_beside_kmod",
  "tcp_edges_through_kmod",
  "hooks_queued_first_packet",
  "script_load",
  "scripted_port_to_module",
  "curl_through_script",
  "hooks_queued_scripted",
  "script_unload",
  "unscripted_port_off_module",
  "krelay_follows_start_0",
  "no_relay_with_start_0",
  "no_tcp_relay_with_start_0",
  "krelay_start",
  "relay_again_after_start",
  "stopped_on_exit",
];

testOrSkip(why, {
  name: "krelay --datapath kmod relays dig and curl in the VM, and nothing with start=0",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const kmod = await buildKmod(await vmKernel());
    try {
      const result = await runVm({
        script: [
          "#!/bin/sh",
          "insmod /kmod/krelay.ko || exit 3",
          // Type checks take minutes, not seconds, under emulation.
          "export HOME=/tmp DENO_DIR=/tmp/deno-dir NO_COLOR=1 KRELAY_SCRIPT_CHECK_TIMEOUT=300",
          `cd ${REPO} || exit 4`,
          "./node_modules/deno/deno run -A tests/fixtures/kmod_e2e_guest.ts",
          "rc=$?",
          "rmmod krelay || exit 5",
          "exit $rc",
        ].join("\n"),
        kmodDir: kmod.dir,
        scriptTimeoutSec: 720,
        memoryMb: 2048,
      });
      const failed = result.output.split("\n").filter((l) => l.startsWith("not ok"));
      assertEquals(failed, [], result.output.slice(-3000));
      for (const name of CHECKS) {
        assert(
          result.output.includes(`ok ${name}\n`),
          `${name} missing:\n${result.output.slice(-3000)}`,
        );
      }
      assertEquals(result.code, 0, result.failure ?? result.output.slice(-2000));
      assertEquals(dmesgProblems(result.dmesg), []);
    } finally {
      kmod.remove();
    }
  },
});
