import { createClient } from '@clickhouse/client';
import { migrate } from './dist/sinks/clickhouse/schema.js';
import { capabilitiesOf } from './dist/sinks/clickhouse/capabilities.js';
const ch = createClient({ url: 'http://127.0.0.1:8223' });
console.log(await migrate(ch, 'vt', capabilitiesOf('18.16.1'), 'vigil'));
await ch.close();
