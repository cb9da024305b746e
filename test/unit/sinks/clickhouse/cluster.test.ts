import { describe, expect, it } from 'vitest';
import { capabilitiesOf } from '../../../../sinks/clickhouse/capabilities.js';
import { MIGRATIONS, onCluster, schemaStatements } from '../../../../sinks/clickhouse/schema.js';

describe('onCluster: the DDL a clickhouse.cluster gets', () => {
  for (const version of ['18.16.1', '24.8.1']) {
    it(`every statement of a fresh database runs ON CLUSTER but a replicated ALTER, and every table replicates (${version})`, () => {
      const caps = capabilitiesOf(version);
      // The cluster's statements before ON CLUSTER: the one-server ones plus migration 10's.
      const plain = schemaStatements('db', caps).slice(0, 2).concat(MIGRATIONS.flatMap((m) => m.statements('db', caps, 'c1')));
      const clustered = schemaStatements('db', caps, 'c1');
      expect(clustered).toHaveLength(plain.length);
      const replicated = [false, false, ...MIGRATIONS.flatMap((m) => m.statements('db', caps, 'c1').map(() => m.replicated === true))];
      // Migration 12's ALTER, and migration 14's seven (the tenant column).
      expect(replicated.filter(Boolean)).toHaveLength(8);
      for (const [i, q] of clustered.entries()) {
        // An ALTER of a replicated table runs on one replica and replicates itself (Migration.replicated).
        if (replicated[i]) {
          expect(q).toBe(plain[i]);
          expect(q).toMatch(/^ALTER TABLE db\.\w+ (MODIFY|ADD) COLUMN /);
          continue;
        }
        expect(q).toMatch(/^(CREATE (DATABASE|TABLE|VIEW|MATERIALIZED VIEW) IF NOT EXISTS|ALTER TABLE|DROP TABLE IF EXISTS) \S+ ON CLUSTER c1\b/);
        // The rest of the statement is the one-server statement, engines aside.
        const engine = /ENGINE = (\w*)MergeTree\(([^)]*)\)/.exec(plain[i] as string);
        if (!engine) {
          expect(q.replace(' ON CLUSTER c1', '')).toBe(plain[i]);
          continue;
        }
        const table = /^CREATE TABLE IF NOT EXISTS db\.(\w+)/.exec(q)?.[1] as string;
        const args = engine[2] ? `, ${engine[2]}` : '';
        expect(q).toContain(`ENGINE = Replicated${engine[1] ?? ''}MergeTree('/clickhouse/tables/{shard}/db/${table}', '{replica}'${args})`);
        expect(q.replace(' ON CLUSTER c1', '').replace(/ENGINE = \w+\([^)]*\)/, 'E')).toBe((plain[i] as string).replace(/ENGINE = \w+\([^)]*\)/, 'E'));
      }
      // Points go through a Null table on a cluster (migration 10, made again with the tenant by
      // migration 15): one per replica, not replicated; one server has none.
      const nullTable = expect.stringMatching(/^CREATE TABLE IF NOT EXISTS db\.points_in ON CLUSTER c1 \([\s\S]*\) ENGINE = Null$/);
      expect(clustered.filter((q) => q.includes('db.points_in ') && q.startsWith('CREATE TABLE'))).toEqual([nullTable, nullTable]);
      expect(schemaStatements('db', caps).join('\n')).not.toContain('points_in');
      // Versioned tables keep their version column.
      expect(clustered.join('\n')).toContain("ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/rollups', '{replica}', version)");
    });
  }

  it('leaves statements alone without a cluster, and refuses one it has no ON CLUSTER form for', () => {
    for (const m of MIGRATIONS) for (const q of m.statements('db', capabilitiesOf('24.8.1'))) expect(onCluster(q, '')).toBe(q);
    expect(() => onCluster('INSERT INTO db.t VALUES (1)', 'c1')).toThrow(/VIGIL_ERR_CLICKHOUSE_SCHEMA: no ON CLUSTER form/);
    expect(() => onCluster('CREATE TABLE IF NOT EXISTS db.t (x UInt8) ENGINE = Memory', 'c1')).toThrow(/no MergeTree engine to replicate/);
  });
});
