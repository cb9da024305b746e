export { ClickHouseSink } from './writer.js';
export { InsertBatcher, INSERT_ORDER, type BatcherOptions } from './batcher.js';
export { capabilitiesOf } from './capabilities.js';
export type { Capabilities } from './capabilities.js';
export { MIGRATIONS, migrate, schemaStatements, insertStatement, INSERT_COLUMNS } from './schema.js';
export type { Migration, InsertTable } from './schema.js';
