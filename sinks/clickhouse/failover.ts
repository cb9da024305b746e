import type { ClickHouseClient } from '@clickhouse/client';
import { isServerException } from './errors.js';

/** A switch from one replica to the next: which URLs (without user info) and why. */
export interface Failover {
  from: string;
  to: string;
  err: unknown;
}

/** The calls Vigil makes on a ClickHouse client; each goes to the current replica. */
const ROUTED = new Set<PropertyKey>(['query', 'command', 'exec', 'insert', 'ping']);

/**
 * One ClickHouse client over the replicas of a cluster (`clickhouse.url`, then
 * `clickhouse.failoverUrls`): every call goes to the current replica, the first one at start.
 * When a call gets no answer (a refused or reset connection, a timeout: anything but an exception
 * the server answered with), the next replica becomes current and the error is still thrown, so
 * the caller's retry (with its backoff and deadline) goes there; the switch sticks until that one
 * fails too ("first alive", like clickhouse-go's alternative hosts). A replicated table makes this
 * safe: any replica takes an insert, and a retried insert whose first attempt did land on the
 * other replica is dropped as a duplicate block (the block ids are in ZooKeeper).
 */
export function failoverClient(clients: readonly ClickHouseClient[], urls: readonly string[], onFailover: (f: Failover) => void): ClickHouseClient {
  let current = 0;
  const next = (from: number, err: unknown) => {
    // Only the first failure of a replica moves on: calls in flight on it when it went down fail too.
    if (clients.length < 2 || current !== from) return;
    current = (from + 1) % clients.length;
    onFailover({ from: urls[from] as string, to: urls[current] as string, err });
  };
  const route = (name: PropertyKey) =>
    async (...args: unknown[]): Promise<unknown> => {
      const i = current;
      const client = clients[i] as unknown as Record<PropertyKey, (...a: unknown[]) => Promise<unknown>>;
      try {
        const out = await client[name]?.(...args);
        if (name === 'ping' && (out as { success?: boolean } | undefined)?.success === false) next(i, (out as { error?: unknown }).error);
        return out;
      } catch (err) {
        if (!isServerException(err)) next(i, err);
        throw err;
      }
    };
  return new Proxy(clients[0] as ClickHouseClient, {
    get(target, name, receiver) {
      if (ROUTED.has(name)) return route(name);
      if (name === 'close') return async () => void (await Promise.all(clients.map((c) => c.close())));
      return Reflect.get(target, name, receiver) as unknown;
    },
  });
}
