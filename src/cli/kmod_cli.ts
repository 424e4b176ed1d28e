/**
 * `krelay kmod build`: builds the kernel module krelay.ko (kbuild, against the installed
 * linux-headers) and its NAT table client, with the warnings of W=1.
 *
 * @module
 */

import { Command } from "commander";

const KMOD_DIR = new URL("../../kmod/", import.meta.url).pathname;

/** The `kmod` command. */
export function kmodCli(): Command {
  const build = new Command("build")
    .description(
      "build kmod/krelay.ko and kmod/tools/krelay-nat against the installed kernel headers " +
        "(Debian: linux-headers-amd64); load it with insmod, then krelay run uses it",
    )
    .option("--kver <version>", "kernel version to build for (default: the newest 6.1 headers)")
    .action(async (options: { kver?: string }) => {
      const args = ["-C", KMOD_DIR, "W=1", ...(options.kver ? [`KVER=${options.kver}`] : [])];
      const status = await new Deno.Command("make", { args, stdout: "inherit", stderr: "inherit" })
        .spawn().status;
      if (!status.success) {
        console.error("krelay kmod build: make failed (are linux-headers installed?)");
        Deno.exit(1);
      }
      console.log(`built ${KMOD_DIR}krelay.ko`);
    });
  return new Command("kmod").description("the kernel module krelay.ko").addCommand(build);
}
