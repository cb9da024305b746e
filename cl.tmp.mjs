import { loadConfig } from './dist/core/config/index.js';
import { componentLogger } from './dist/core/log.js';
import * as infra from './dist/infra/index.js';
const env = { VIGIL_CLICKHOUSE_URL: 'http://127.0.0.1:8223', VIGIL_CLICKHOUSE_CLUSTER: 'vigil', VIGIL_CLICKHOUSE_FAILOVER_URLS: 'http://127.0.0.1:8224', VIGIL_INFRA_CLICKHOUSE_TCP_PORT: '9100', VIGIL_INFRA_CLICKHOUSE_INTERSERVER_PORT: '9109', VIGIL_INFRA_CLICKHOUSE_HTTPS_PORT: '8543', VIGIL_INFRA_CLICKHOUSE_REPLICAS: '2', VIGIL_INFRA_ZOOKEEPER_PORT: '2281', VIGIL_DATA_DIR: '/tmp/cl-data' };
const c = loadConfig({ env: { ...process.env, ...env } });
await infra[process.argv[2]](c, componentLogger('x'), ['zookeeper', 'clickhouse', 'clickhouse-2']);
