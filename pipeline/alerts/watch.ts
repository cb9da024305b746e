/**
 * Hot reload of a rules file. Watches the file's DIRECTORY, not the file: editors save by writing
 * a temporary file and renaming it over the original, and Kubernetes swaps a ConfigMap's `..data`
 * symlink, both of which leave a watch on the old inode silent. Any event in the directory
 * schedules one debounced re-read; the sha256 of the content decides whether anything changed, so
 * unrelated files, touch and unchanged saves cost one read and no reload.
 *
 * An invalid or unreadable file is reported through `onError` and changes nothing: the caller
 * keeps evaluating the rules it has. The same broken content is reported once, not per event.
 */
import { createHash } from 'node:crypto';
import { watch, readFileSync, type FSWatcher } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { RulesError, parseRules, type RuleSet } from '../../workers/alerts/rules.js';

export interface WatchRulesOptions {
  /** A new, valid rule set whose content differs from the last one seen. Exceptions it throws are not caught. */
  onReload(ruleSet: RuleSet): void;
  /** The file could not be read, parsed or validated; the previous rules stay in force. */
  onError(err: RulesError): void;
  /** Quiet time after the last event before the file is read (an editor's save is several events). Default 200. */
  debounceMs?: number;
  /**
   * The rule set the caller already runs (from `loadRules` at startup). Its hash seeds the
   * comparison, so the first check reloads only if the file changed since. Without it the file is
   * read once right away and the result reported through `onReload` or `onError`.
   */
  current?: RuleSet;
  /**
   * Rules made of several files (the rules file and `alerts.tenantRulesDir`'s): read them all
   * again on any event, instead of the one file; `directories` are watched too.
   */
  bundle?: { load(): RuleSet; directories: readonly string[] };
}

export interface RulesWatcher {
  close(): void;
}

export function watchRules(path: string, options: WatchRulesOptions): RulesWatcher {
  const file = resolve(path);
  const debounceMs = options.debounceMs ?? 200;
  let lastHash = options.current?.hash ?? null;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const checkBundle = (load: () => RuleSet): void => {
    let ruleSet: RuleSet;
    try {
      ruleSet = load();
    } catch (err) {
      if (!(err instanceof RulesError)) throw err;
      // Reported once per distinct problem, like a broken file's content.
      const broken = `broken:${err.message}`;
      if (lastHash === broken) return;
      lastHash = broken;
      options.onError(err);
      return;
    }
    if (ruleSet.hash === lastHash) return;
    lastHash = ruleSet.hash;
    options.onReload(ruleSet);
  };

  const check = (): void => {
    timer = undefined;
    if (closed) return;
    if (options.bundle) {
      checkBundle(options.bundle.load);
      return;
    }
    let text: string;
    try {
      // Synchronous on purpose: a rules file is small, and one read-and-parse step cannot interleave with the next event.
      text = readFileSync(file, 'utf8');
    } catch (err) {
      // Remembered like content, so a missing file is reported once and its return (even unchanged) reloads.
      const unreadable = `unreadable:${(err as NodeJS.ErrnoException).code ?? 'error'}`;
      if (lastHash === unreadable) return;
      lastHash = unreadable;
      options.onError(new RulesError('VIGIL_ERR_RULES_FILE', path, [], { cause: err, message: `cannot read ${path}: ${(err as Error).message}` }));
      return;
    }
    const hash = createHash('sha256').update(text).digest('hex');
    if (hash === lastHash) return;
    lastHash = hash;
    let ruleSet: RuleSet;
    try {
      ruleSet = parseRules(text, path);
    } catch (err) {
      if (!(err instanceof RulesError)) throw err;
      options.onError(err);
      return;
    }
    options.onReload(ruleSet);
  };

  const schedule = (): void => {
    if (closed) return;
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(check, debounceMs);
    // A pending reload must not keep a process that is shutting down alive.
    timer.unref();
  };

  const watchers: FSWatcher[] = [];
  const directories = [...new Set([...(path ? [dirname(file)] : []), ...(options.bundle?.directories ?? []).map((d) => resolve(d))])];
  for (const directory of directories) {
    let watcher: FSWatcher;
    try {
      // Every event counts, not only those naming the file: a ConfigMap update names `..data`; the hash filters the rest.
      watcher = watch(directory, { persistent: false }, schedule);
    } catch (err) {
      for (const w of watchers) w.close();
      throw new RulesError('VIGIL_ERR_RULES_FILE', path || directory, [], { cause: err, message: `cannot watch ${directory}: ${(err as Error).message}` });
    }
    watcher.on('error', (err) => {
      options.onError(new RulesError('VIGIL_ERR_RULES_FILE', path || directory, [], { cause: err, message: `watching ${directory} failed: ${err.message}` }));
    });
    watchers.push(watcher);
  }
  schedule();

  return {
    close(): void {
      if (closed) return;
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      for (const w of watchers) w.close();
    },
  };
}
