/**
 * Runs a system command (iptables, ip, ...) to completion and captures its output. Behind an
 * interface so that logic driving commands is testable without root.
 *
 * @module
 */

/** The outcome of a command. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `cmd args...`, optionally feeding `stdin`. Never throws for a non-zero exit. */
export type CommandRunner = (cmd: string, args: string[], stdin?: string) => Promise<CommandResult>;

/** The real runner; a missing binary gives code 127 and a message, not an exception. */
export const runCommand: CommandRunner = async (cmd, args, stdin) => {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, {
      args,
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    return { code: 127, stdout: "", stderr: `${cmd}: ${(e as Error).message}` };
  }
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
};

/** Runs a command and throws an Error with its stderr when it fails. */
export async function mustRun(
  run: CommandRunner,
  cmd: string,
  args: string[],
  stdin?: string,
): Promise<string> {
  const r = await run(cmd, args, stdin);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
  }
  return r.stdout;
}
