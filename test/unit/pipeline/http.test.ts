import { afterAll, describe, expect, it } from 'vitest';
import { Readiness, startHttpServer } from '../../../pipeline/http.js';
import { componentLogger } from '../../../core/log.js';
import { createMetrics } from '../../../pipeline/metrics.js';

describe('HTTP server', async () => {
  const metrics = createMetrics();
  const readiness = new Readiness();
  const server = await startHttpServer({ host: '127.0.0.1', port: 0, registry: metrics.registry, readiness, log: componentLogger('test') });
  afterAll(() => server.close());
  const url = (p: string) => `http://127.0.0.1:${server.port}${p}`;

  it('serves Prometheus text on /metrics', async () => {
    metrics.pointsProcessed.inc(5);
    const res = await fetch(url('/metrics'));
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    expect(text).toContain('# TYPE vigil_points_processed_total counter');
    expect(text).toMatch(/^vigil_points_processed_total 5$/m);
  });

  it('answers /healthz, and /readyz only when every check is ready', async () => {
    expect((await fetch(url('/healthz'))).status).toBe(200);
    expect((await fetch(url('/readyz'))).status).toBe(503);
    readiness.set('kafka', true);
    readiness.set('clickhouse', false);
    const notReady = await fetch(url('/readyz'));
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toEqual({ status: 'not ready', checks: { kafka: true, clickhouse: false } });
    readiness.set('clickhouse', true);
    expect((await fetch(url('/readyz'))).status).toBe(200);
    expect((await fetch(url('/nope'))).status).toBe(404);
  });
});
