import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../core/log.js';

/** Readiness of each dependency by name; /readyz is 200 only when every one is true. */
export class Readiness {
  private readonly state = new Map<string, boolean>();

  set(name: string, ready: boolean): void {
    this.state.set(name, ready);
  }

  get ready(): boolean {
    return this.state.size > 0 && [...this.state.values()].every(Boolean);
  }

  snapshot(): Record<string, boolean> {
    return Object.fromEntries(this.state);
  }
}

export interface HttpServer {
  readonly port: number;
  close(): Promise<void>;
}

/** /metrics (Prometheus text format), /healthz (process alive), /readyz (dependencies reachable). */
export async function startHttpServer(options: {
  host: string;
  port: number;
  registry: Registry;
  readiness: Readiness;
  log: Logger;
}): Promise<HttpServer> {
  const { registry, readiness, log } = options;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err: unknown) => {
          log.error({ err }, 'rendering /metrics failed');
          res.writeHead(500).end();
        },
      );
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    } else if (path === '/readyz') {
      const ok = readiness.ready;
      res
        .writeHead(ok ? 200 : 503, { 'content-type': 'application/json' })
        .end(JSON.stringify({ status: ok ? 'ready' : 'not ready', checks: readiness.snapshot() }));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ host: options.host, port }, 'http server listening');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
