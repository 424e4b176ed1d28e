/**
 * Ways a relay socket ends that are more than close(2): a graceful close that does not turn
 * into a reset, and a spare descriptor held to refuse clients at the descriptor limit.
 *
 * @module
 */

import { libc } from "../../ffi/libc.ts";
import { EFD_CLOEXEC } from "../../ffi/linux.ts";
import { Errno, errno } from "../system/errno.ts";
import { type Poller, Ready } from "./poller.ts";
import { closeFd, shutdownWrite } from "./socket.ts";

/** How long a client being closed gets to close its side before its socket is closed anyway. */
export const CLOSE_GRACE_MS = 2_000;

/**
 * Closes `fd` with a FIN, not a reset: what the peer sent is read and discarded (closing with
 * unread data would make the kernel send an RST), and the socket goes once the peer has closed
 * too, or after {@link CLOSE_GRACE_MS}.
 */
export function closeGracefully(poller: Poller, fd: number): void {
  const scratch = new Uint8Array(4096);
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    poller.forget(fd);
    closeFd(fd);
  };
  const timer = setTimeout(finish, CLOSE_GRACE_MS);
  const drain = () => {
    for (;;) {
      const n = libc().recvInto(fd, scratch, BigInt(scratch.length), 0);
      if (n > 0) continue;
      if (n === 0 || errno() !== Errno.EAGAIN) finish();
      return;
    }
  };
  shutdownWrite(fd);
  poller.watch(fd, Ready.In | Ready.RdHup | Ready.Edge, drain);
  drain();
}

/** A cheap fd (an eventfd, close-on-exec) held only to be given up; -1 when none is left. */
export function reserveFd(): number {
  return libc().eventfd(0, EFD_CLOEXEC);
}
