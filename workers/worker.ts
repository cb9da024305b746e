/**
 * The piscina worker module: every thread of every shard pool loads it. Tasks are selected by
 * name (`pool.run(task, { name })`): `ingest` runs on any thread, `track` on the thread that
 * owns the shard.
 */
export { default as ingest } from './ingest.js';
export { track } from './shard.js';
