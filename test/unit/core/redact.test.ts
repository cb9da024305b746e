import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../core/config/index.js';
import { clickhouseConnection, REDACTED, redactConfig, redactUrls, splitCredentials } from '../../../core/redact.js';
import { kafkaSecurity } from '../../../pipeline/kafka.js';

describe('credentials never shown', () => {
  it('masks the password of every URL in a text', () => {
    expect(redactUrls('POST https://alice:s3cret@hooks.example/x failed; http://bob:pw@h:8123 down')).toBe('POST https://alice:***@hooks.example/x failed; http://bob:***@h:8123 down');
    expect(redactUrls('http://h:8123/?a=b@c and user@example.com')).toBe('http://h:8123/?a=b@c and user@example.com');
  });

  it('vigil config: secrets redacted, URL passwords masked, the rest as configured', () => {
    const config = loadConfig({
      env: {
        VIGIL_CLICKHOUSE_URL: 'http://ch:pw1@127.0.0.1:8123',
        VIGIL_CLICKHOUSE_PASSWORD: 'pw2',
        VIGIL_KAFKA_SASL_PASSWORD: 'pw3',
        VIGIL_ALERTS_WEBHOOK_URL: 'https://u:pw4@hooks.example/x',
        VIGIL_ALERTS_WEBHOOK_TOKEN: 'pw5',
      },
    });
    const shown = JSON.stringify(redactConfig(config));
    for (const secret of ['pw1', 'pw2', 'pw3', 'pw4', 'pw5']) expect(shown).not.toContain(secret);
    const r = redactConfig(config) as { clickhouse: Record<string, string>; kafka: Record<string, string>; alerts: Record<string, string> };
    expect([r.clickhouse['password'], r.kafka['saslPassword'], r.alerts['webhookToken'], r.alerts['alertmanagerToken']]).toEqual([REDACTED, REDACTED, REDACTED, '']);
    expect(r.clickhouse['url']).toBe('http://ch:***@127.0.0.1:8123');
    expect(r.kafka['brokers']).toEqual(['127.0.0.1:9092']);
  });

  it('reads a secret from <OPTION>_FILE (one trailing newline dropped), naming the variable when the file is missing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-secret-'));
    writeFileSync(join(dir, 'pw'), 'from file\n');
    expect(loadConfig({ env: { VIGIL_CLICKHOUSE_PASSWORD_FILE: join(dir, 'pw') } }).clickhouse.password).toBe('from file');
    expect(loadConfig({ env: { VIGIL_KAFKA_SASL_PASSWORD_FILE: join(dir, 'pw') } }).kafka.saslPassword).toBe('from file');
    expect(() => loadConfig({ env: { VIGIL_CLICKHOUSE_PASSWORD_FILE: join(dir, 'nope') } })).toThrow(/VIGIL_CLICKHOUSE_PASSWORD_FILE: cannot read .*nope: ENOENT/);
    expect(() => loadConfig({ env: { VIGIL_NOT_AN_OPTION_FILE: join(dir, 'pw') } })).toThrow(/VIGIL_NOT_AN_OPTION_FILE is not a Vigil option/);
  });

  it('ClickHouse credentials leave the URL: user info used unless set on their own', () => {
    expect(splitCredentials('http://a%40b:p%3Aw@h:8123')).toEqual({ url: 'http://h:8123', username: 'a@b', password: 'p:w' });
    const base = loadConfig({ env: {} }).clickhouse;
    expect(clickhouseConnection({ ...base, url: 'https://u:p@h:8443' })).toEqual({ url: 'https://h:8443', username: 'u', password: 'p' });
    expect(clickhouseConnection({ ...base, url: 'https://u:p@h:8443', username: 'me', password: 'mine' })).toEqual({ url: 'https://h:8443', username: 'me', password: 'mine' });
    expect(clickhouseConnection(base)).toEqual({ url: 'http://127.0.0.1:8123', username: 'default', password: '' });
  });

  it('Kafka TLS and SASL options map to kafkajs', () => {
    const base = loadConfig({ env: {} }).kafka;
    expect(kafkaSecurity(base)).toEqual({});
    expect(kafkaSecurity({ ...base, ssl: true, saslMechanism: 'scram-sha-512', saslUsername: 'u', saslPassword: 'p' })).toEqual({
      ssl: { rejectUnauthorized: true },
      sasl: { mechanism: 'scram-sha-512', username: 'u', password: 'p' },
    });
    const dir = mkdtempSync(join(tmpdir(), 'vigil-ca-'));
    writeFileSync(join(dir, 'ca.pem'), 'CA');
    expect(kafkaSecurity({ ...base, sslCaFile: join(dir, 'ca.pem') })).toEqual({ ssl: { rejectUnauthorized: true, ca: Buffer.from('CA') } });
  });
});
