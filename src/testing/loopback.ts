/**
 * What the loopback fakes of Discord and Slack share: an HTTP server on 127.0.0.1 with a
 * WebSocket endpoint (the gateway, Socket Mode), closing it with every connection, and waiting
 * for a recorded call.
 */
import type { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

export interface LoopbackHandlers {
  onRequest(req: IncomingMessage, res: ServerResponse): Promise<void>;
  onSocket(ws: WebSocket): void;
}

/**
 * Listens on a free 127.0.0.1 port; `make` builds the fake from the server, the WebSocket server
 * and the port. Requests go to its onRequest, upgrades under `socketPath` to its onSocket, other
 * upgrades are refused.
 */
export async function startLoopback<T extends LoopbackHandlers>(socketPath: string, make: (server: Server, wss: WebSocketServer, port: number) => T): Promise<T> {
  const server = createServer();
  const wss = new WebSocketServer({ noServer: true });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const fake = make(server, wss, (server.address() as AddressInfo).port);
  server.on('request', (req, res) => void fake.onRequest(req, res));
  server.on('upgrade', (req, socket, head) => {
    if (!req.url?.startsWith(socketPath)) return socket.destroy();
    wss.handleUpgrade(req, socket, head, (ws) => fake.onSocket(ws));
  });
  return fake;
}

/** Closes the sockets, the WebSocket server and the HTTP server with every open connection. */
export async function closeLoopback(server: Server, wss: WebSocketServer, sockets: Iterable<WebSocket>): Promise<void> {
  for (const ws of sockets) ws.terminate();
  await new Promise<void>((resolve) => wss.close(() => resolve()));
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/**
 * The first of `calls` (recorded so far, or emitted later as 'call' on `fake`) matching `pred`;
 * rejects after `timeoutMs` with `failure()` as the message.
 */
export function waitForCall<C>(fake: EventEmitter, calls: readonly C[], pred: (c: C) => boolean, timeoutMs: number, failure: () => string): Promise<C> {
  const found = calls.find(pred);
  if (found) return Promise.resolve(found);
  return new Promise((resolve, reject) => {
    const onCall = (c: C) => {
      if (!pred(c)) return;
      clearTimeout(timer);
      fake.off('call', onCall);
      resolve(c);
    };
    const timer = setTimeout(() => {
      fake.off('call', onCall);
      reject(new Error(failure()));
    }, timeoutMs);
    fake.on('call', onCall);
  });
}
