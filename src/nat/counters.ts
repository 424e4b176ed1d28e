/**
 * Packet counters of the rewrite engine: what was seen, rewritten (by flow), passed
 * untouched (by reason) and dropped (by reason).
 *
 * @module
 */

/** Every counter the engine keeps; plain numbers so a snapshot is a cheap copy. */
export interface PacketCounters {
  /** Packets the engine looked at. */
  seen: number;
  /** Packets rewritten, in total and by flow (U1/U2: request to the server; U3/U4: reply). */
  rewritten: number;
  udpRequests: number;
  udpReplies: number;
  /** TCP segments of scripted services passed on after their scripts (never rewritten). */
  tcpSegments: number;
  /** First packets of UDP flows recorded and left for the kernel's NAT. */
  toKernel: number;
  /** ICMP errors about UDP flows translated (counted in `rewritten` too). */
  icmpErrors: number;
  /** Packets accepted untouched, in total and by reason. */
  passed: number;
  passedOtherProtocol: number;
  passedOtherPort: number;
  passedNoFlow: number;
  passedFragment: number;
  passedMalformed: number;
  /** Packets dropped, in total and by reason. */
  dropped: number;
  droppedNatFull: number;
  /** First packets of UDP flows whose service had no server up. */
  droppedNoServer: number;
}

/** A zeroed set of counters. */
export function newCounters(): PacketCounters {
  return {
    seen: 0,
    rewritten: 0,
    udpRequests: 0,
    udpReplies: 0,
    tcpSegments: 0,
    toKernel: 0,
    icmpErrors: 0,
    passed: 0,
    passedOtherProtocol: 0,
    passedOtherPort: 0,
    passedNoFlow: 0,
    passedFragment: 0,
    passedMalformed: 0,
    dropped: 0,
    droppedNatFull: 0,
    droppedNoServer: 0,
  };
}
