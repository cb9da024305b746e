import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * TLS material and a SCRAM password for the local stack's secured listeners, made once with
 * openssl under `<dataDir>/tls`: a CA, a server certificate for 127.0.0.1 and localhost signed by
 * it (key and chain in one PEM file, as Kafka's PEM keystore and ClickHouse read them), and a
 * random password for the `vigil` SASL user. Tests and users point Vigil at `ca.pem` and
 * `scram-password`.
 */
export interface LocalTls {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  /** Server key and certificate chain in one file (Kafka's PEM keystore). */
  keystoreFile: string;
  scramUser: string;
  scramPasswordFile: string;
}

export function localTls(dataDir: string): LocalTls {
  const dir = join(dataDir, 'tls');
  const tls: LocalTls = {
    dir,
    caFile: join(dir, 'ca.pem'),
    certFile: join(dir, 'server.pem'),
    keyFile: join(dir, 'server-key.pem'),
    keystoreFile: join(dir, 'server-keystore.pem'),
    scramUser: 'vigil',
    scramPasswordFile: join(dir, 'scram-password'),
  };
  if (existsSync(tls.keystoreFile) && existsSync(tls.scramPasswordFile)) return tls;
  mkdirSync(dir, { recursive: true });
  const caKey = join(dir, 'ca-key.pem');
  const csr = join(dir, 'server.csr');
  const ext = join(dir, 'server.ext');
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', tls.caFile, '-days', '3650', '-subj', '/CN=Vigil local CA');
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'server-key.rsa.pem'), '-out', csr, '-subj', '/CN=127.0.0.1');
  // PKCS#8: the form Kafka's PEM keystore reads.
  openssl('pkcs8', '-topk8', '-nocrypt', '-in', join(dir, 'server-key.rsa.pem'), '-out', tls.keyFile);
  writeFileSync(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  openssl('x509', '-req', '-in', csr, '-CA', tls.caFile, '-CAkey', caKey, '-CAcreateserial', '-out', tls.certFile, '-days', '3650', '-extfile', ext);
  writeFileSync(tls.keystoreFile, readFileSync(tls.keyFile, 'utf8') + readFileSync(tls.certFile, 'utf8'));
  writeFileSync(tls.scramPasswordFile, randomBytes(18).toString('base64url'), { mode: 0o600 });
  return tls;
}
