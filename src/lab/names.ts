/**
 * Lab names: the prefix a caller chooses, the namespace names derived from it, and the
 * reverse (which lab a namespace belongs to), used to find what a crashed run left behind.
 *
 * @example
 * ```ts
 * import { labNamespaces, randomTestPrefix } from "./names.ts";
 * const prefix = randomTestPrefix(); // e.g. "krt-4fz9q1"
 * labNamespaces(prefix, true).server2; // "krt-4fz9q1-srv2"
 * ```
 * @module
 */

/** Prefix used by `krelay lab`. */
export const CLI_LAB_PREFIX = "krl";

/** Start of every prefix the tests use (followed by a random part). */
export const TEST_PREFIX_START = "krt-";

/** Matches every prefix krelay itself uses: `krl` and `krt-<random>`. */
export const OUR_PREFIXES: RegExp = /^(krl|krt-[a-z0-9]+)$/;

/** Roles of the namespaces of a lab, and the suffix each adds to the prefix. */
export const ROLE_SUFFIX = {
  client: "cli",
  relay: "rly",
  server: "srv",
  server2: "srv2",
} as const;

/** A namespace's role in the lab. */
export type Role = keyof typeof ROLE_SUFFIX;

/** The namespace names of one lab. */
export interface LabNamespaces {
  client: string;
  relay: string;
  server: string;
  /** Present when the lab has a second server. */
  server2?: string;
}

// Short and plain: it becomes part of file names and of `ip netns` names (no slashes, no dots).
const PREFIX_SHAPE = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;
const PREFIX_MAX = 32;

/** Throws a RangeError unless `prefix` can name a lab (lower-case letters, digits, inner dashes). */
export function assertPrefix(prefix: string): void {
  if (prefix.length > PREFIX_MAX || !PREFIX_SHAPE.test(prefix)) {
    throw new RangeError(
      `bad lab prefix "${prefix}": use 1-${PREFIX_MAX} lower-case letters, digits and inner dashes`,
    );
  }
}

/** The namespace names for a lab with this prefix; `server2` only when `secondServer`. */
export function labNamespaces(prefix: string, secondServer = false): LabNamespaces {
  assertPrefix(prefix);
  const ns: LabNamespaces = {
    client: `${prefix}-${ROLE_SUFFIX.client}`,
    relay: `${prefix}-${ROLE_SUFFIX.relay}`,
    server: `${prefix}-${ROLE_SUFFIX.server}`,
  };
  if (secondServer) ns.server2 = `${prefix}-${ROLE_SUFFIX.server2}`;
  return ns;
}

/** Every namespace name a lab with this prefix may have, second server included. */
export function allLabNamespaces(prefix: string): string[] {
  return Object.values(labNamespaces(prefix, true)) as string[];
}

/** A fresh test prefix, `krt-` and 6 random base-36 characters (about 2e9 possibilities). */
export function randomTestPrefix(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  let tail = "";
  for (const b of bytes) tail += (b % 36).toString(36);
  return TEST_PREFIX_START + tail;
}

/**
 * Splits a namespace name into its lab prefix and role, or returns undefined when the name
 * is not of the form `<prefix>-cli|rly|srv|srv2`.
 */
export function parseLabNamespace(name: string): { prefix: string; role: Role } | undefined {
  for (const [role, suffix] of Object.entries(ROLE_SUFFIX) as [Role, string][]) {
    const tail = `-${suffix}`;
    if (!name.endsWith(tail)) continue;
    const prefix = name.slice(0, -tail.length);
    if (prefix.length > PREFIX_MAX || !PREFIX_SHAPE.test(prefix)) continue;
    return { prefix, role };
  }
  return undefined;
}

/** Parses `ip netns list` output (`name` or `name (id: N)` per line) into names. */
export function parseNetnsList(text: string): string[] {
  const names: string[] = [];
  for (const line of text.split("\n")) {
    const name = line.trim().split(/\s+/)[0];
    if (name) names.push(name);
  }
  return names;
}
