export { ClickHouseSink } from './writer.js';
export { capabilitiesOf } from './capabilities.js';
export type { Capabilities } from './capabilities.js';
export { MIGRATIONS, migrate, schemaStatements, POINTS_INSERT } from './schema.js';
export type { Migration } from './schema.js';
