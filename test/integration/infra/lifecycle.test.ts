import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as infra from '../../../infra/index.js';
import { loadConfig, usesLocalStack } from '../../../core/config/index.js';
import { componentLogger } from '../../../core/log.js';
import { testConfig } from '../../helpers/resources.js';

/** Processes whose command line names `marker`, read from /proc (what `down` must leave none of). */
function processesNaming(marker: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(marker)) pids.push(Number(entry));
    } catch {
      /* exited meanwhile */
    }
  }
  return pids;
}

// These exercise the local stack itself; against an external Kafka/ClickHouse there is none to manage.
describe.runIf(usesLocalStack(testConfig()))('vigil infra up / status / down', () => {
  const log = componentLogger('test-infra');

  it('is idempotent on the running stack: a second up starts nothing', async () => {
    const config = testConfig();
    const before = await infra.status(config);
    expect(before.every((s) => s.state === 'running')).toBe(true);
    expect(await infra.up(config, log)).toEqual([]);
  });

  it('brings up a second stack on other ports and data dir, and down leaves none of its processes', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'vigil-infra-'));
    afterAll(() => rm(dataDir, { recursive: true, force: true }));
    const base = testConfig();
    const kafkaLib = join(base.dataDir, 'kafka', 'lib');
    const config = loadConfig({
      overrides: {
        dataDir,
        'kafka.brokers': ['127.0.0.1:19092'],
        'clickhouse.url': 'http://127.0.0.1:18123',
        'http.port': 19464,
        'infra.kafkaControllerPort': 29094,
        'infra.kafkaSaslSslPort': 19094,
        'infra.clickhouseTcpPort': 19000,
        'infra.clickhouseInterserverPort': 19009,
        'infra.clickhouseHttpsPort': 18443,
        'infra.prometheusPort': 19090,
        'infra.alertmanagerPort': 19093,
        'infra.kafkaHeapMb': 256,
        // A one-server stack whatever the suite runs on (VIGIL_INFRA_CLICKHOUSE_REPLICAS=2 runs it on a cluster).
        'infra.clickhouseReplicas': 1,
        'clickhouse.cluster': '',
      },
    });
    // Reuse the jars the main stack fetched instead of a second Maven run.
    const { symlinkSync, mkdirSync } = await import('node:fs');
    mkdirSync(join(dataDir, 'kafka'), { recursive: true });
    symlinkSync(kafkaLib, join(dataDir, 'kafka', 'lib'));

    try {
      const started = await infra.up(config, log);
      expect(started.sort()).toEqual(['alertmanager', 'clickhouse', 'kafka', 'prometheus']);
      const status = await infra.status(config);
      expect(status.map((s) => [s.name, s.state])).toEqual([
        ['clickhouse', 'running'],
        ['kafka', 'running'],
        ['prometheus', 'running'],
        ['alertmanager', 'running'],
      ]);
      expect(processesNaming(dataDir).length).toBeGreaterThanOrEqual(4);
      const ping = await fetch('http://127.0.0.1:18123/ping');
      expect(await ping.text()).toContain('Ok.');
    } finally {
      await infra.down(config, log);
    }
    expect(processesNaming(dataDir)).toEqual([]);
    expect((await infra.status(config)).every((s) => s.state === 'stopped')).toBe(true);
    // The main stack was not touched.
    expect((await infra.status(base)).every((s) => s.state === 'running')).toBe(true);
  });

  it('refuses to start a service whose port another process holds, naming the service and port', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'vigil-busy-'));
    afterAll(() => rm(dataDir, { recursive: true, force: true }));
    const base = testConfig();
    // Same ports as the running stack, fresh data dir: nothing there is ours.
    const config = loadConfig({ overrides: { dataDir, 'clickhouse.url': base.clickhouse.url } });
    await expect(infra.up(config, log, ['clickhouse'])).rejects.toThrow(`VIGIL_ERR_INFRA_PORT_BUSY: clickhouse: port ${new URL(base.clickhouse.url).port}`);
  });
});
