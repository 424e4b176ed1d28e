/**
 * krelay's NAT entries pushed into krelay.ko's table (setsockopt on an AF_INET socket), so
 * that any process can read them with getsockopt, as the specification's tcp_relay did.
 *
 * @module
 */

import { libc } from "../../ffi/libc.ts";
import type { NatEntry as KrelayEntry } from "../nat/nat_table.ts";
import { formatIpv4 } from "../packet/address.ts";
import { errno, errnoText } from "../system/errno.ts";
import {
  encodeFlush,
  encodeNatEntry,
  encodeNatKey,
  KRELAY_SO,
  type NatEntry,
  type NatStateName,
  SOL_IP,
} from "./abi.ts";
import { AF_INET, SOCK_DGRAM } from "../../ffi/linux.ts";

/** The module's state for one of krelay's flow states. */
export function natState(state: string): NatStateName {
  if (state === "closed") return "closing";
  if (state === "established" || state === "replied" || state === "stream") return "established";
  return "new";
}

/** krelay's entry in the module's ABI form. */
export function toKmodEntry(e: KrelayEntry): NatEntry {
  return {
    protocol: e.protocol,
    state: natState(e.state),
    clientAddr: formatIpv4(e.client),
    clientPort: e.clientPort,
    relayAddr: formatIpv4(e.relay),
    servicePort: e.servicePort,
    serverAddr: formatIpv4(e.server),
    serverPort: e.serverPort,
    relayPort: e.protocol === "tcp" ? e.relayPort : 0,
    bytesIn: BigInt(e.bytesToServer),
    bytesOut: BigInt(e.bytesToClient),
    packetsIn: BigInt(e.packetsToServer),
    packetsOut: BigInt(e.packetsToClient),
  };
}

/** A socket through which entries go to krelay.ko. */
export class KmodNatTable {
  #fd: number;
  /** Calls the module refused (table full, for example): counted, never fatal. */
  errors = 0;

  constructor() {
    this.#fd = libc().socket(AF_INET, SOCK_DGRAM, 0);
    if (this.#fd < 0) throw new Error(`kmod NAT table: socket failed: ${errnoText(errno())}`);
  }

  /** Adds or replaces the entry. */
  put(e: KrelayEntry): void {
    this.#set(KRELAY_SO.SET_ADD, encodeNatEntry(toKmodEntry(e)));
  }

  /** Removes the entry (a missing one is no error). */
  remove(e: KrelayEntry): void {
    const k = toKmodEntry(e);
    this.#set(KRELAY_SO.SET_DEL, encodeNatKey(k), true);
  }

  /** Empties the module's table. */
  flush(): void {
    this.#set(KRELAY_SO.SET_FLUSH, encodeFlush());
  }

  close(): void {
    if (this.#fd >= 0) libc().close(this.#fd);
    this.#fd = -1;
  }

  #set(option: number, value: Uint8Array, missingOk = false): void {
    if (this.#fd < 0) return;
    if (libc().setsockopt(this.#fd, SOL_IP, option, value, value.length) === 0) return;
    const e = errno();
    if (missingOk && e === 2) return;
    this.errors++;
  }
}
