import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import type { AlertEvent } from '../../sinks/alerts/event.js';
import type { DropReason, OutputErrorCode, OutputStats } from '../../sinks/alerts/output.js';

/**
 * A real HTTP receiver on 127.0.0.1 for the alert output tests: records every request and answers
 * with the status `respond` gives (it may wait, to hold a request open).
 */
export interface ReceivedRequest {
  n: number;
  method: string | undefined;
  path: string | undefined;
  headers: IncomingHttpHeaders;
  body: string;
  status: number;
}

export interface Receiver {
  url: string;
  port: number;
  requests: ReceivedRequest[];
  /** Requests answered so far. */
  answered: number;
  /** Bodies answered 2xx, parsed. */
  accepted(): unknown[];
  close(): Promise<void>;
}

export type Respond = (n: number, body: string) => number | Promise<number>;

export async function startReceiver(respond: Respond = () => 200, port = 0): Promise<Receiver> {
  const requests: ReceivedRequest[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const record: ReceivedRequest = { n: requests.length + 1, method: req.method, path: req.url, headers: req.headers, body, status: 0 };
      requests.push(record);
      void Promise.resolve(respond(record.n, body)).then((status) => {
        record.status = status;
        receiver.answered++;
        res.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? '' : `status ${status}`);
      });
    });
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  const actual = (server.address() as AddressInfo).port;
  const receiver: Receiver = {
    url: `http://127.0.0.1:${actual}`,
    port: actual,
    requests,
    answered: 0,
    accepted: () => requests.filter((r) => r.status >= 200 && r.status < 300).map((r) => JSON.parse(r.body) as unknown),
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return receiver;
}

/** A port nothing listens on (for "the receiver is down"); startReceiver(..., port) brings it up later. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function until<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 15_000, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** OutputStats that records what it is told. */
export function recordingStats() {
  const seen = { sent: 0, failed: [] as OutputErrorCode[], dropped: {} as Partial<Record<DropReason, number>> };
  const stats: OutputStats = {
    onSent: (n) => void (seen.sent += n),
    onFailed: (code) => void seen.failed.push(code),
    onDropped: (n, reason) => void (seen.dropped[reason] = (seen.dropped[reason] ?? 0) + n),
  };
  return { seen, stats };
}

let counter = 0;

/** A complete alert event; `fingerprint` and `id` unique unless given. */
export function alertEvent(overrides: Partial<AlertEvent> = {}): AlertEvent {
  counter++;
  const fingerprint = overrides.fingerprint ?? `${Date.now().toString(16)}${counter.toString(16)}`.padStart(16, '0').slice(-16);
  const status = overrides.status ?? 'firing';
  const startsAt = overrides.startsAt ?? new Date(Date.now() - 60_000).toISOString();
  return {
    version: 1,
    id: `${fingerprint}-${status}-${startsAt}-${counter}`,
    fingerprint,
    status,
    rule: { id: 'cpu_high', name: 'CpuHigh', kind: 'threshold' },
    severity: 'critical',
    series: { metric: 'cpu.usage', tags: { host: 'web-1' } },
    tenant: '',
    value: 93.1,
    threshold: 90,
    score: 0.97,
    startsAt,
    endsAt: status === 'resolved' ? new Date().toISOString() : null,
    observedAt: new Date().toISOString(),
    explanation: { rule: 'cpu > 90 for 5m' },
    labels: { team: 'sre' },
    annotations: { summary: 'CPU above 90%' },
    ...overrides,
  };
}

/** For tests that fail requests on purpose: their warnings would only be noise. */
export const quietLogger = pino({ level: 'silent' });
