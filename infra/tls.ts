import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * TLS material and a SCRAM password for the local stack's secured listeners, made once with
 * openssl under `<dataDir>/tls`: a CA, a server certificate for 127.0.0.1 and localhost signed by
 * it (key and chain in one PEM file, as Kafka's PEM keystore reads them), a client certificate
 * signed by it (ClickHouse's HTTPS port requires one), and a random password for the `vigil` SASL
 * user. Tests and users point Vigil at `ca.pem`, `client.pem`, `client-key.pem` and
 * `scram-password`. Each piece is made when missing, so a data dir from before keeps its CA.
 */
export interface LocalTls {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  /** Server key and certificate chain in one file (Kafka's PEM keystore). */
  keystoreFile: string;
  clientCertFile: string;
  clientKeyFile: string;
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
    clientCertFile: join(dir, 'client.pem'),
    clientKeyFile: join(dir, 'client-key.pem'),
    scramUser: 'vigil',
    scramPasswordFile: join(dir, 'scram-password'),
  };
  mkdirSync(dir, { recursive: true });
  const caKey = join(dir, 'ca-key.pem');
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  /** A certificate signed by the CA, its key in PKCS#8 (the form Kafka's PEM keystore reads). */
  const signed = (name: string, subject: string, extensions: string, certFile: string, keyFile: string) => {
    const csr = join(dir, `${name}.csr`);
    const ext = join(dir, `${name}.ext`);
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, `${name}-key.rsa.pem`), '-out', csr, '-subj', subject);
    openssl('pkcs8', '-topk8', '-nocrypt', '-in', join(dir, `${name}-key.rsa.pem`), '-out', keyFile);
    writeFileSync(ext, extensions);
    openssl('x509', '-req', '-in', csr, '-CA', tls.caFile, '-CAkey', caKey, '-CAcreateserial', '-out', certFile, '-days', '3650', '-extfile', ext);
  };
  if (!existsSync(tls.keystoreFile)) {
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', tls.caFile, '-days', '3650', '-subj', '/CN=Vigil local CA');
    signed('server', '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n', tls.certFile, tls.keyFile);
    writeFileSync(tls.keystoreFile, readFileSync(tls.keyFile, 'utf8') + readFileSync(tls.certFile, 'utf8'));
  }
  if (!existsSync(tls.clientCertFile)) signed('client', '/CN=vigil', 'extendedKeyUsage=clientAuth\n', tls.clientCertFile, tls.clientKeyFile);
  if (!existsSync(tls.scramPasswordFile)) writeFileSync(tls.scramPasswordFile, randomBytes(18).toString('base64url'), { mode: 0o600 });
  return tls;
}
