/**
 * A relay thread: the Worker's entry module (relay_thread_serve.ts does the work).
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { answer, serveRelayRequest } from "./relay_thread_serve.ts";

self.onmessage = answer(serveRelayRequest);
