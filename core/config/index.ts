import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { VigilError } from '../errors.js';
import { redactUrls } from '../redact.js';
import { configSchema, envName, isSection, leaves, type InputFormat, type SchemaNode } from './schema.js';

export { configSchema, envName, leaves, INPUT_FORMATS } from './schema.js';
export type { InputFormat } from './schema.js';

export interface VigilConfig {
  readonly dataDir: string;
  readonly kafka: {
    readonly brokers: readonly string[];
    readonly clientId: string;
    readonly groupId: string;
    readonly topics: readonly string[];
    readonly topicPattern: string;
    readonly topicFormats: Readonly<Record<string, InputFormat>>;
    readonly dlqTopic: string;
    readonly alertsTopic: string;
    readonly topicPartitions: number;
    readonly repartition: 'auto' | 'always' | 'never';
    readonly repartitionTopic: string;
    readonly fromBeginning: boolean;
    readonly sessionTimeoutMs: number;
    readonly maxWaitTimeMs: number;
    readonly ssl: boolean;
    readonly sslCaFile: string;
    readonly sslCertFile: string;
    readonly sslKeyFile: string;
    readonly sslRejectUnauthorized: boolean;
    readonly saslMechanism: '' | 'plain' | 'scram-sha-256' | 'scram-sha-512';
    readonly saslUsername: string;
    readonly saslPassword: string;
  };
  readonly clickhouse: {
    readonly url: string;
    readonly failoverUrls: readonly string[];
    readonly username: string;
    readonly password: string;
    readonly caFile: string;
    readonly certFile: string;
    readonly keyFile: string;
    readonly database: string;
    readonly compression: 'none' | 'gzip';
    readonly requestTimeoutMs: number;
    readonly cluster: string;
  };
  readonly http: { readonly host: string; readonly port: number };
  readonly log: { readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' };
  readonly pipeline: {
    readonly workers: number;
    readonly maxTasksInFlight: number;
    readonly seriesIdleTimeoutMs: number;
    readonly taskMaxMessages: number;
    readonly taskMaxBytes: number;
    readonly taskLingerMs: number;
    readonly maxInFlightBytes: number;
    readonly maxMessageBytes: number;
    readonly workerMaxHeapMb: number;
    readonly maxFutureMs: number;
    readonly watermarkMaxAheadMs: number;
    readonly insertMaxRows: number;
    readonly insertLingerMs: number;
    readonly retryInitialMs: number;
    readonly retryMaxMs: number;
    readonly shutdownTimeoutMs: number;
    readonly stallTimeoutMs: number;
  };
  readonly rollups: {
    readonly enabled: boolean;
    readonly widthsSeconds: readonly number[];
    readonly allowedLatenessMs: number;
    readonly lateRetentionMs: number;
    readonly idleTimeoutMs: number;
  };
  readonly models: {
    readonly enabled: boolean;
    readonly widthSeconds: number;
    readonly detectors: readonly ('robust' | 'ewma' | 'seasonal' | 'iforest' | 'lstm')[];
    readonly threshold: number;
    readonly learningBuckets: number;
    readonly seasonalPeriodsSeconds: readonly number[];
    readonly seasonalMaxSlots: number;
    readonly robustWindow: number;
    readonly ewmaAlpha: number;
    readonly forestTrees: number;
    readonly forestSamples: number;
    readonly forestRefitEvery: number;
    readonly lstmModelDir: string;
    readonly minScore: number;
    readonly stateIntervalSeconds: number;
  };
  readonly forecasts: {
    readonly series: readonly string[];
    readonly horizonSeconds: number;
    readonly stepSeconds: number;
    readonly refreshSeconds: number;
  };
  readonly incidents: {
    readonly enabled: boolean;
    readonly windowSeconds: number;
    readonly lookbackSeconds: number;
    readonly intervalMs: number;
    readonly relatedPatterns: readonly string[];
    readonly relatedThreshold: number;
    readonly relatedMax: number;
  };
  readonly alerts: {
    readonly enabled: boolean;
    readonly rulesFile: string;
    readonly tenantRulesDir: string;
    readonly alertmanagerToken: string;
    readonly webhookToken: string;
    readonly alertmanagerUrl: string;
    readonly webhookUrl: string;
  };
  readonly retention: {
    readonly pointsDays: number;
    readonly rollupsDays: number;
    readonly rollupsWidthDays: readonly string[];
    readonly anomaliesDays: number;
    readonly forecastsDays: number;
    readonly incidentsDays: number;
    readonly alertsDays: number;
    readonly checkIntervalMs: number;
  };
  readonly tenants: {
    readonly tag: string;
    readonly header: string;
    readonly topics: Readonly<Record<string, string>>;
    readonly usersDir: string;
    readonly readCluster: string;
    readonly maxSeriesPerShard: number;
  };
  readonly limits: {
    readonly maxTagsPerPoint: number;
    readonly maxTagKeyLength: number;
    readonly maxTagValueLength: number;
    readonly maxMetricNameLength: number;
    readonly maxFieldsPerLine: number;
    readonly maxSeriesPerShard: number;
  };
  readonly infra: {
    readonly mode: 'auto' | 'on' | 'off';
    readonly kafkaControllerPort: number;
    readonly kafkaSaslSslPort: number;
    readonly kafkaHeapMb: number;
    readonly clickhouseTcpPort: number;
    readonly clickhouseInterserverPort: number;
    readonly clickhouseHttpsPort: number;
    readonly clickhouseReplicas: number;
    readonly zookeeperPort: number;
    readonly prometheusPort: number;
    readonly alertmanagerPort: number;
    readonly readyTimeoutMs: number;
  };
}

/** The environment variable naming the configuration file (also `--config`). */
export const CONFIG_FILE_ENV = 'VIGIL_CONFIG';

/** JSON Schema for ajv: sections closed to unknown keys and defaulted to `{}` so nested defaults apply. */
function toJsonSchema(node: SchemaNode, root = true): object {
  if (isSection(node)) {
    return {
      type: 'object',
      additionalProperties: false,
      ...(root ? {} : { default: {} }),
      properties: Object.fromEntries(Object.entries(node.properties).map(([k, v]) => [k, toJsonSchema(v, false)])),
    };
  }
  const { description: _d, secret: _s, ...rest } = node as SchemaNode & { description: string; secret?: boolean };
  return rest;
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true });
const validate = ajv.compile(toJsonSchema(configSchema));

export interface LoadOptions {
  /** Path of a JSON or YAML file; defaults to $VIGIL_CONFIG; no file means defaults plus environment. */
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** Values set by the caller (tests, CLI flags), applied after file and environment. */
  overrides?: Record<string, unknown>;
  /** Directory relative `dataDir` is resolved against. */
  cwd?: string;
}

export function loadConfig(options: LoadOptions = {}): VigilConfig {
  const env = options.env ?? process.env;
  const file = options.file ?? env[CONFIG_FILE_ENV];
  const sources = new Map<string, string>();
  const raw: Record<string, unknown> = file ? readConfigFile(file) : {};
  applyEnv(raw, env, sources);
  if (options.overrides) for (const [path, value] of Object.entries(options.overrides)) setPath(raw, path, value);

  if (!validate(raw)) throw configError(validate.errors ?? [], raw, sources, file);
  const widths = (raw as { rollups: { widthsSeconds: number[] } }).rollups.widthsSeconds;
  const bad = widths.find((w) => 86400 % w !== 0);
  if (bad !== undefined) {
    throw new VigilError('VIGIL_ERR_CONFIG_INVALID', `rollups.widthsSeconds = ${JSON.stringify(widths)}: expected widths that divide a day (86400 s), ${bad} does not`);
  }
  const models = (raw as { models: { enabled: boolean; widthSeconds: number } }).models;
  if (models.widthSeconds === 0) models.widthSeconds = Math.max(...widths);
  else if (!widths.includes(models.widthSeconds)) {
    throw new VigilError('VIGIL_ERR_CONFIG_INVALID', `models.widthSeconds = ${models.widthSeconds}: expected one of rollups.widthsSeconds ${JSON.stringify(widths)}`);
  }
  const forecasts = (raw as { forecasts: { series: string[] } }).forecasts;
  if (forecasts.series.length > 0 && !models.enabled) {
    throw new VigilError('VIGIL_ERR_CONFIG_INVALID', `forecasts.series = ${JSON.stringify(forecasts.series)}: expected models.enabled too (forecasts build on the detectors' seasonal profiles)`);
  }
  const clickhouse = (raw as { clickhouse: { cluster: string; failoverUrls: string[] } }).clickhouse;
  if (clickhouse.failoverUrls.length > 0 && !clickhouse.cluster) {
    throw new VigilError('VIGIL_ERR_CONFIG_INVALID', `clickhouse.failoverUrls = ${JSON.stringify(redactUrls(clickhouse.failoverUrls.join(' ')).split(' '))}: expected clickhouse.cluster too (only replicated tables take an insert on another server without splitting or doubling the data)`);
  }
  const config = raw as unknown as { dataDir: string };
  if (!isAbsolute(config.dataDir)) config.dataDir = resolve(options.cwd ?? process.cwd(), config.dataDir);
  return deepFreeze(raw) as unknown as VigilConfig;
}

/** True when Kafka and ClickHouse are at their loopback defaults, i.e. the user configured neither. */
export function usesLocalStack(config: VigilConfig): boolean {
  if (config.infra.mode !== 'auto') return config.infra.mode === 'on';
  const defaults = Object.fromEntries(leaves().map(({ path, leaf }) => [path, leaf.default]));
  return (
    JSON.stringify(config.kafka.brokers) === JSON.stringify(defaults['kafka.brokers']) &&
    config.clickhouse.url === defaults['clickhouse.url']
  );
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new VigilError('VIGIL_ERR_CONFIG_FILE', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = /\.ya?ml$/i.test(file) ? parseYaml(text) : JSON.parse(text);
  } catch (err) {
    throw new VigilError('VIGIL_ERR_CONFIG_FILE', `cannot parse ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new VigilError('VIGIL_ERR_CONFIG_FILE', `${file}: expected an object at the top level`);
  }
  return parsed as Record<string, unknown>;
}

function applyEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv, sources: Map<string, string>): void {
  const byEnv = new Map(leaves().map((l) => [envName(l.path), l]));
  for (const [envKey, envText] of Object.entries(env)) {
    if (!envKey.startsWith('VIGIL_') || envKey === CONFIG_FILE_ENV || envText === undefined) continue;
    let name = envKey;
    let text = envText;
    // `<OPTION>_FILE`: the value is the content of that file (a mounted secret), one trailing newline dropped.
    const fileOf = envKey.endsWith('_FILE') && !byEnv.has(envKey) ? byEnv.get(envKey.slice(0, -'_FILE'.length)) : undefined;
    if (fileOf && fileOf.leaf.type === 'string') {
      name = envKey.slice(0, -'_FILE'.length);
      try {
        text = readFileSync(envText, 'utf8').replace(/\r?\n$/, '');
      } catch (err) {
        throw new VigilError('VIGIL_ERR_CONFIG_FILE', `${envKey}: cannot read ${envText}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
      }
    }
    const entry = byEnv.get(name);
    if (!entry) {
      throw new VigilError('VIGIL_ERR_CONFIG_UNKNOWN_KEY', `environment variable ${name} is not a Vigil option (see README, Configuration)`);
    }
    if (entry.leaf.type === 'object') {
      throw new VigilError('VIGIL_ERR_CONFIG_UNKNOWN_KEY', `${entry.path} can only be set in the configuration file, not through ${name}`);
    }
    setPath(raw, entry.path, fromEnv(name, text, entry.leaf.type, 'items' in entry.leaf ? entry.leaf.items?.type : undefined));
    sources.set(entry.path, `environment variable ${envKey}`);
  }
}

/** Environment values are text; convert by the schema type, leaving bad text for ajv to report with the key. */
function fromEnv(name: string, text: string, type: string, itemType?: string): unknown {
  switch (type) {
    case 'integer':
    case 'number':
      return text.trim() !== '' && Number.isFinite(Number(text)) ? Number(text) : text;
    case 'boolean':
      return text === 'true' || text === '1' ? true : text === 'false' || text === '0' ? false : text;
    case 'array':
      return splitList(text)
        .map((s) => s.trim())
        .filter((s) => s !== '')
        .map((s) => (itemType === 'integer' && /^-?\d+$/.test(s) ? Number(s) : s));
    default:
      return text;
  }
}

/** Splits a list at its commas, except inside braces or double quotes (`disk{host="a",dc="b"},cpu` is two items). */
function splitList(text: string): string[] {
  const items: string[] = [];
  let depth = 0;
  let quoted = false;
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === '{') depth++;
    else if (c === '}') depth = Math.max(0, depth - 1);
    else if (c === ',' && depth === 0) {
      items.push(text.slice(from, i));
      from = i + 1;
    }
  }
  items.push(text.slice(from));
  return items;
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let node = target;
  for (const key of keys.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[keys[keys.length - 1] as string] = value;
}

function getPath(target: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((node, key) => (node && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined), target);
}

function configError(errors: ErrorObject[], raw: object, sources: Map<string, string>, file: string | undefined): VigilError {
  const lines = errors.map((e) => {
    const parent = e.instancePath.slice(1).replaceAll('/', '.');
    if (e.keyword === 'additionalProperties') {
      const key = (e.params as { additionalProperty: string }).additionalProperty;
      return { unknown: true, text: `unknown key ${parent ? `${parent}.` : ''}${key}${file ? ` in ${file}` : ''}` };
    }
    const value = getPath(raw, parent);
    const where = sources.get(parent) ?? (file ? `file ${file}` : 'defaults');
    return { unknown: false, text: `${parent} = ${JSON.stringify(value)} (from ${where}): expected ${describe(e)}` };
  });
  const code = lines.every((l) => l.unknown) ? 'VIGIL_ERR_CONFIG_UNKNOWN_KEY' : 'VIGIL_ERR_CONFIG_INVALID';
  return new VigilError(code, lines.map((l) => l.text).join('; '));
}

function describe(e: ErrorObject): string {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'type':
      return `a value of type ${String(p['type'])}`;
    case 'enum':
      return `one of ${(p['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'minimum':
    case 'maximum':
      return `a number ${String(p['comparison'])} ${String(p['limit'])}`;
    default:
      return e.message ?? e.keyword;
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

/** The reference table README.md carries (`vigil config --docs`). */
export function configDocs(): string {
  const rows = leaves().map(({ path, leaf }) => {
    const env = leaf.type === 'object' ? '(file only)' : `\`${envName(path)}\``;
    const range =
      'enum' in leaf && leaf.enum
        ? leaf.enum.map((v) => `\`${v}\``).join(', ')
        : 'minimum' in leaf && leaf.minimum !== undefined
          ? `${leaf.minimum}–${leaf.maximum}`
          : leaf.type === 'object'
            ? 'enum' in leaf.additionalProperties
              ? `map to ${leaf.additionalProperties.enum.map((v) => `\`${v}\``).join(', ')}`
              : `map to strings matching \`${leaf.additionalProperties.pattern}\``
            : leaf.type;
    return `| \`${path}\` | ${env} | \`${JSON.stringify(leaf.default)}\` | ${range} | ${leaf.description} |`;
  });
  return ['| key | environment | default | allowed | description |', '|---|---|---|---|---|', ...rows].join('\n');
}
