/**
 * The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`), the ports it hands to
 * sockets that bind port 0 or connect unbound. The daemon checks the relay's own port range
 * against it (those ports could collide with the relay's: a bind then fails and the relay tries
 * another port, but the range is meant to be krelay's alone), and the warm-up keeps its origin
 * out of it.
 *
 * @module
 */

/** The overlap of two inclusive ranges, or undefined. */
export function overlap(
  a: readonly [number, number],
  b: readonly [number, number],
): [number, number] | undefined {
  const low = Math.max(a[0], b[0]);
  const high = Math.min(a[1], b[1]);
  return low <= high ? [low, high] : undefined;
}

/** Reads net.ipv4.ip_local_port_range of the current namespace; undefined if unreadable. */
export function kernelEphemeralRange(): [number, number] | undefined {
  try {
    const [low, high] = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range")
      .trim().split(/\s+/).map(Number);
    return Number.isInteger(low) && Number.isInteger(high) ? [low, high] : undefined;
  } catch {
    return undefined;
  }
}
