import { readFileSync } from 'node:fs';
import { leaves } from './config/schema.js';
import type { VigilConfig } from './config/index.js';

/** What a secret shows as wherever the configuration is printed. */
export const REDACTED = '<redacted>';

const URL_PASSWORD = /\b([a-z][a-z0-9+.-]*:\/\/[^\s/?#@:]*:)[^\s/?#@]*@/gi;

/** Text with the password of every URL's user info replaced by `***` (`https://u:***@host`). */
export function redactUrls(text: string): string {
  return text.replace(URL_PASSWORD, '$1***@');
}

/** A copy of the configuration fit to print: secrets redacted, URL passwords masked. */
export function redactConfig(config: VigilConfig): unknown {
  const secrets = new Set(leaves().filter(({ leaf }) => 'secret' in leaf && leaf.secret).map(({ path }) => path));
  const walk = (value: unknown, path: string): unknown => {
    if (secrets.has(path)) return value === '' ? '' : REDACTED;
    if (typeof value === 'string') return redactUrls(value);
    if (Array.isArray(value)) return value.map((v) => walk(v, path));
    if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, path ? `${path}.${k}` : k)]));
    return value;
  };
  return walk(config, '');
}

/**
 * A URL without its user info, and that user info: credentials travel in a header or the client's
 * own fields, never in a URL that ends up in a log line or an error message (and fetch() refuses
 * URLs that carry them).
 */
export function splitCredentials(url: string): { url: string; username: string; password: string } {
  const u = new URL(url);
  const username = decodeURIComponent(u.username);
  const password = decodeURIComponent(u.password);
  u.username = '';
  u.password = '';
  return { url: u.toString().replace(/\/$/, url.endsWith('/') ? '/' : ''), username, password };
}

/** TLS material from PEM files (undefined when none is configured). */
export function tlsFiles(files: { ca: string; cert: string; key: string }): { ca?: Buffer; cert?: Buffer; key?: Buffer } | undefined {
  if (!files.ca && !files.cert && !files.key) return undefined;
  const read = (f: string) => (f ? readFileSync(f) : undefined);
  const out: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
  const ca = read(files.ca);
  const cert = read(files.cert);
  const key = read(files.key);
  if (ca) out.ca = ca;
  if (cert) out.cert = cert;
  if (key) out.key = key;
  return out;
}

/** @clickhouse/client options for `config.clickhouse`: credentials out of the URL, TLS files read. */
export function clickhouseConnection(config: VigilConfig['clickhouse'], endpoint: string = config.url): {
  url: string;
  username: string;
  password: string;
  tls?: { ca_cert: Buffer; cert?: Buffer; key?: Buffer };
} {
  const { url, username, password } = splitCredentials(endpoint);
  const out: ReturnType<typeof clickhouseConnection> = {
    url,
    username: username && config.username === 'default' ? username : config.username,
    password: config.password || password,
  };
  const tls = tlsFiles({ ca: config.caFile, cert: config.certFile, key: config.keyFile });
  if (tls?.ca) out.tls = { ca_cert: tls.ca, ...(tls.cert ? { cert: tls.cert } : {}), ...(tls.key ? { key: tls.key } : {}) };
  return out;
}
