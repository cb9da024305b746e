import { mkdirSync, mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadRuleBundle, loadRules, type RuleSet, type RulesError } from '../../../../workers/alerts/rules.js';
import { watchRules, type RulesWatcher } from '../../../../pipeline/alerts/watch.js';

const DEBOUNCE = 50;
/** Long enough for an event to be delivered and debounced, to assert that nothing happened. */
const settle = () => new Promise((r) => setTimeout(r, DEBOUNCE * 6));
const rule = (id: string, value: number) => `rules:\n  - id: ${id}\n    expr: "system.cpu.usage_total > ${value} for 5m"\n`;

describe('watchRules', () => {
  const cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const fn of cleanup.splice(0)) fn();
  });

  function setup(initial: string, withCurrent: boolean) {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-watch-'));
    const file = join(dir, 'rules.yaml');
    writeFileSync(file, initial);
    const reloads: RuleSet[] = [];
    const errors: RulesError[] = [];
    const watcher: RulesWatcher = watchRules(file, {
      onReload: (set) => reloads.push(set),
      onError: (err) => errors.push(err),
      debounceMs: DEBOUNCE,
      ...(withCurrent ? { current: loadRules(file) } : {}),
    });
    cleanup.push(() => {
      watcher.close();
      rmSync(dir, { recursive: true, force: true });
    });
    return { dir, file, reloads, errors, watcher };
  }

  it('reloads on a change, reports an invalid write without reloading, ignores unchanged saves', async () => {
    const { file, reloads, errors } = setup(rule('cpu', 90), false);
    // Without `current`, the file is read once at the start.
    await vi.waitFor(() => expect(reloads).toHaveLength(1));
    expect(reloads[0]?.rules[0]?.threshold).toBe(90);

    writeFileSync(file, rule('cpu', 95));
    await vi.waitFor(() => expect(reloads).toHaveLength(2));
    expect(reloads[1]?.rules[0]?.threshold).toBe(95);

    writeFileSync(file, 'rules:\n  - id: cpu\n    expr: "system.cpu.usage_total >"\n');
    await vi.waitFor(() => expect(errors).toHaveLength(1));
    expect(errors[0]?.code).toBe('VIGIL_ERR_RULES_INVALID');
    expect(errors[0]?.message).toContain('rules[0].expr');
    await settle();
    expect(reloads).toHaveLength(2);

    // The same broken content saved again is not reported twice.
    writeFileSync(file, 'rules:\n  - id: cpu\n    expr: "system.cpu.usage_total >"\n');
    await settle();
    expect(errors).toHaveLength(1);

    writeFileSync(file, rule('cpu', 95));
    await vi.waitFor(() => expect(reloads).toHaveLength(3));

    // Unchanged content (a save without edits, a touch) does not reload.
    writeFileSync(file, rule('cpu', 95));
    await settle();
    expect(reloads).toHaveLength(3);
  });

  it('with a tenants\' rules directory: a tenant file added, broken, mended or removed reloads the whole set', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-watch-'));
    const file = join(dir, 'rules.yaml');
    const tenants = join(dir, 'tenants');
    mkdirSync(tenants);
    writeFileSync(file, rule('cpu', 90));
    const reloads: RuleSet[] = [];
    const errors: RulesError[] = [];
    const load = () => loadRuleBundle(file, tenants);
    const watcher = watchRules(file, { onReload: (set) => reloads.push(set), onError: (err) => errors.push(err), debounceMs: DEBOUNCE, current: load(), bundle: { load, directories: [tenants] } });
    cleanup.push(() => {
      watcher.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const ids = () => reloads.at(-1)?.rules.map((r) => r.id);
    writeFileSync(join(tenants, 'acme.yaml'), rule('hot', 50));
    await vi.waitFor(() => expect(ids()).toEqual(['cpu', 'acme/hot']));
    writeFileSync(join(tenants, 'acme.yaml'), 'rules:\n  - id: hot\n    expr: "m >"\n');
    await vi.waitFor(() => expect(errors).toHaveLength(1));
    expect(errors[0]?.message).toContain('acme.yaml');
    writeFileSync(join(tenants, 'acme.yaml'), rule('hot', 60));
    await vi.waitFor(() => expect(reloads).toHaveLength(2));
    expect(reloads[1]?.rules[1]?.threshold).toBe(60);
    unlinkSync(join(tenants, 'acme.yaml'));
    await vi.waitFor(() => expect(ids()).toEqual(['cpu']));
  });

  it('follows editors that save by renaming a new file over the old one', async () => {
    const { dir, file, reloads, errors } = setup(rule('cpu', 90), true);
    await settle();
    expect(reloads).toHaveLength(0); // `current` matches the file: nothing to reload

    const tmp = join(dir, '.rules.yaml.tmp');
    writeFileSync(tmp, rule('cpu', 80));
    renameSync(tmp, file);
    await vi.waitFor(() => expect(reloads).toHaveLength(1));
    expect(reloads[0]?.rules[0]?.threshold).toBe(80);

    // The watch survives the rename: a second replacement is seen too.
    writeFileSync(tmp, rule('mem', 70));
    renameSync(tmp, file);
    await vi.waitFor(() => expect(reloads).toHaveLength(2));
    expect(reloads[1]?.rules[0]?.id).toBe('mem');
    expect(errors).toEqual([]);
  });

  it('reports a deleted file once and reloads when it comes back', async () => {
    const { file, reloads, errors } = setup(rule('cpu', 90), true);
    rmSync(file);
    await vi.waitFor(() => expect(errors).toHaveLength(1));
    expect(errors[0]?.code).toBe('VIGIL_ERR_RULES_FILE');
    writeFileSync(file, rule('cpu', 90));
    await vi.waitFor(() => expect(reloads).toHaveLength(1));
    expect(errors).toHaveLength(1);
  });

  it('stops after close()', async () => {
    const { file, reloads, watcher } = setup(rule('cpu', 90), true);
    watcher.close();
    writeFileSync(file, rule('cpu', 99));
    await settle();
    expect(reloads).toHaveLength(0);
  });
});
