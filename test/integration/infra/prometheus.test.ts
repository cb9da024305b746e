import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { Readiness, startHttpServer } from '../../../pipeline/http.js';
import { componentLogger } from '../../../core/log.js';
import { createMetrics } from '../../../pipeline/metrics.js';
import { testConfig } from '../../helpers/resources.js';

const config = testConfig();
const promUrl = `http://127.0.0.1:${config.infra.prometheusPort}`;

async function promQuery(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await res.json()) as { status: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
  expect(body.status).toBe('success');
  return body.data.result;
}

describe("the real Prometheus scrapes Vigil's /metrics", () => {
  const metrics = createMetrics();
  const readiness = new Readiness();
  readiness.set('test', true);
  let close: (() => Promise<void>) | undefined;
  afterAll(async () => close?.());

  it('sees the target up and reads a Vigil counter with its value', async () => {
    // The port Prometheus is configured to scrape (prometheus.yml is written from the same config).
    const server = await startHttpServer({ ...config.http, registry: metrics.registry, readiness, log: componentLogger('test') });
    close = () => server.close();
    metrics.deadLetters.inc({ code: 'VIGIL_ERR_DECODE_JSON' }, 7);
    metrics.ready.set(1);

    let samples: Awaited<ReturnType<typeof promQuery>> = [];
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      samples = await promQuery('vigil_dead_letters_total{job="vigil"}');
      if (samples.length > 0) break;
      await sleep(1000);
    }
    expect(samples).toHaveLength(1);
    expect(samples[0]?.metric['code']).toBe('VIGIL_ERR_DECODE_JSON');
    expect(Number(samples[0]?.value[1])).toBe(7);
    const up = await promQuery('up{job="vigil"}');
    expect(up[0]?.value[1]).toBe('1');
  });
});
