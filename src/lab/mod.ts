/**
 * The network-namespace lab used by `krelay lab` and the end-to-end tests: a client, a
 * relay and one or two real servers (dnsmasq and nginx), on documentation addresses only.
 *
 * @example
 * ```ts
 * import { Lab, startServers } from "./mod.ts";
 * const lab = await Lab.start({ prefix: "krl", secondServer: true });
 * try {
 *   await startServers(lab);
 *   const r = await lab.exec("client", ["dig", "+short", "@203.0.113.10", "lab.example"]);
 *   console.log(r.stdout); // 203.0.113.80
 * } finally {
 *   await lab.down();
 * }
 * ```
 * @module
 */

export * from "./addresses.ts";
export * from "./cleanup.ts";
export * from "./dnsmasq.ts";
export * from "./names.ts";
export * from "./nginx.ts";
export * from "./payload.ts";
export * from "./process.ts";
export * from "./servers.ts";
export * from "./topology.ts";
export * from "./wait.ts";
