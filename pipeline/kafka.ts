import { createRequire } from 'node:module';
import { Kafka, logLevel, type KafkaConfig, type LogEntry, type SASLOptions } from 'kafkajs';
import { tlsFiles } from '../core/redact.js';
import type { VigilConfig } from '../core/config/index.js';
import type { Logger } from '../core/log.js';
import { repartitionTopicOf } from './repartition.js';

interface RequestQueueInternals {
  pending: unknown[];
  throttledUntil: number;
  throttleCheckTimeoutId: unknown;
  scheduleCheckPendingRequests(): void;
}

/**
 * kafkajs 2.2.4 (its last release) re-arms a timer of `throttledUntil - now` ms (negative, so 1 ms)
 * after every response even when nothing waits and nothing is throttled: every broker connection
 * wakes the event loop a thousand times a second for nothing (tulios/kafkajs#1556, #1704; the fix
 * of #1667 and #1768 never released). The same method, minus that timer: a request waiting behind
 * the in-flight limit or a throttle is still checked again, as before.
 */
export function mendRequestQueue(proto: RequestQueueInternals): boolean {
  const original = proto.scheduleCheckPendingRequests;
  if (typeof original !== 'function' || (original as { vigilMended?: true }).vigilMended) return false;
  const mended = function (this: RequestQueueInternals): void {
    if (this.pending.length === 0 && this.throttledUntil <= Date.now()) return;
    original.call(this);
  };
  (mended as { vigilMended?: true }).vigilMended = true;
  proto.scheduleCheckPendingRequests = mended;
  return true;
}

const require = createRequire(import.meta.url);
const RequestQueue = require('kafkajs/src/network/requestQueue/index.js') as { prototype: RequestQueueInternals };
mendRequestQueue(RequestQueue.prototype);

/** What kafkajs' record decoder reads from (its protocol/decoder.js). */
interface KafkaDecoder {
  buffer: Buffer;
  offset: number;
  readInt8(): number;
  readVarInt(): number;
  readVarIntBytes(): Buffer | null;
}

interface BatchContext {
  firstOffset?: string;
  firstTimestamp?: string;
  magicByte?: number;
  isControlBatch?: boolean;
  timestampType?: number;
  maxTimestamp?: string;
}

export type RecordDecoder = (decoder: KafkaDecoder, batchContext?: BatchContext) => unknown;

const LOG_APPEND_TIME = (require('kafkajs/src/protocol/timestampTypes.js') as { LOG_APPEND_TIME: number }).LOG_APPEND_TIME;

/**
 * kafkajs' decoder of one record (protocol/recordBatch/record/v0/decoder.js) does its offset and
 * timestamp arithmetic in Long objects: the batch's first offset and timestamp parsed from their
 * strings again for every record, the timestamp delta read a byte at a time into new Longs, each
 * sum printed back. At one point per message that was a tenth of the main thread (`--preset
 * drain`, `--cpu-prof`). This one does the same with numbers while they stay safe integers, and
 * hands any other record (headers, deltas or offsets past 2^53, a truncated varint) to kafkajs'
 * own decoder from the record's first byte, so its output is kafkajs' in every case (the parity
 * test in test/unit/pipeline/kafka.test.ts).
 */
export function leanRecordDecoder(original: RecordDecoder): RecordDecoder {
  let context: BatchContext | undefined;
  let firstOffset = Number.NaN;
  let firstTimestamp = Number.NaN;
  return (decoder, batchContext = {}) => {
    if (batchContext !== context) {
      context = batchContext;
      firstOffset = safeInteger(batchContext.firstOffset);
      firstTimestamp = safeInteger(batchContext.firstTimestamp);
    }
    const start = decoder.offset;
    const buffer = decoder.buffer;
    if (Number.isNaN(firstOffset) || Number.isNaN(firstTimestamp)) return original(decoder, batchContext);
    const attributes = decoder.readInt8();
    // The timestamp delta, a zigzag varlong: up to 7 bytes (49 bits) stays a safe integer.
    let pos = decoder.offset;
    let raw = 0;
    let scale = 1;
    let byte = 0;
    let bytes = 0;
    do {
      const b = buffer[pos++];
      if (b === undefined || ++bytes > 7) return rewind(original, decoder, batchContext, start);
      byte = b;
      raw += (byte & 0x7f) * scale;
      scale *= 128;
    } while (byte >= 0x80);
    decoder.offset = pos;
    const timestampDelta = raw % 2 === 0 ? raw / 2 : -(raw + 1) / 2;
    const offsetDelta = decoder.readVarInt();
    const offset = firstOffset + offsetDelta;
    const timestampMs = firstTimestamp + timestampDelta;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(timestampMs)) return rewind(original, decoder, batchContext, start);
    const key = decoder.readVarIntBytes();
    const value = decoder.readVarIntBytes();
    // Headers go through kafkajs (their folding of repeated keys is its own); metrics rarely carry them.
    const headers = decoder.readVarInt();
    if (headers !== 0 && headers !== -1) return rewind(original, decoder, batchContext, start);
    const { magicByte, isControlBatch = false, timestampType, maxTimestamp } = batchContext;
    return {
      magicByte,
      attributes,
      timestamp: timestampType === LOG_APPEND_TIME && maxTimestamp ? maxTimestamp : String(timestampMs),
      offset: String(offset),
      key,
      value,
      headers: {},
      isControlRecord: isControlBatch,
      batchContext,
    };
  };
}

function rewind(original: RecordDecoder, decoder: KafkaDecoder, batchContext: BatchContext, start: number): unknown {
  decoder.offset = start;
  return original(decoder, batchContext);
}

/** The integer a kafkajs int64 string holds, when it is a safe integer written canonically; NaN otherwise. */
function safeInteger(text: string | undefined): number {
  if (text === undefined) return Number.NaN;
  const n = Number(text);
  return Number.isSafeInteger(n) && String(n) === text ? n : Number.NaN;
}

/**
 * kafkajs loads its record decoder with the first fetch response (protocol/requests/fetch requires
 * its versions lazily), so the module's cached exports replaced here are what the consumers of
 * this process decode with. Loaded again (a test runner's fresh module graph), this finds its own
 * decoder there and keeps kafkajs' beside it.
 */
type CachedDecoder = RecordDecoder & { vigilOriginal?: RecordDecoder };
const recordDecoderPath = require.resolve('kafkajs/src/protocol/recordBatch/record/v0/decoder.js');
const cached = require(recordDecoderPath) as CachedDecoder;
export const kafkajsRecordDecoder: RecordDecoder = cached.vigilOriginal ?? cached;
if (!cached.vigilOriginal) {
  const lean: CachedDecoder = leanRecordDecoder(kafkajsRecordDecoder);
  lean.vigilOriginal = kafkajsRecordDecoder;
  (require.cache[recordDecoderPath] as NodeJS.Module).exports = lean;
}

/** A kafkajs client whose logs go to the component's pino logger instead of the console. */
export function createKafka(config: VigilConfig, log: Logger): Kafka {
  const levels: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
    [logLevel.ERROR]: 'error',
    [logLevel.WARN]: 'warn',
    [logLevel.INFO]: 'info',
    [logLevel.DEBUG]: 'debug',
  };
  return new Kafka({
    clientId: config.kafka.clientId,
    brokers: [...config.kafka.brokers],
    logLevel: logLevel.WARN,
    logCreator:
      () =>
      ({ level, log: entry }: LogEntry) => {
        const { message, ...rest } = entry;
        log[levels[level] ?? 'info'](rest, message);
      },
    retry: { initialRetryTime: 300, retries: 8, maxRetryTime: 10_000 },
    ...kafkaSecurity(config.kafka),
  });
}

/** kafkajs `ssl` and `sasl` options from the configuration (none by default). */
export function kafkaSecurity(k: VigilConfig['kafka']): Pick<KafkaConfig, 'ssl' | 'sasl'> {
  const out: Pick<KafkaConfig, 'ssl' | 'sasl'> = {};
  const files = tlsFiles({ ca: k.sslCaFile, cert: k.sslCertFile, key: k.sslKeyFile });
  if (k.ssl || files) out.ssl = { rejectUnauthorized: k.sslRejectUnauthorized, ...files };
  if (k.saslMechanism) out.sasl = { mechanism: k.saslMechanism, username: k.saslUsername, password: k.saslPassword } as SASLOptions;
  return out;
}

/** Creates missing topics (metric topics when listed, dead letters, alerts); existing ones are left as they are. */
export async function ensureTopics(kafka: Kafka, config: VigilConfig, extra: readonly string[] = []): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const wanted = [...(config.kafka.topicPattern ? [] : config.kafka.topics), config.kafka.dlqTopic, config.kafka.alertsTopic, ...extra];
    if (config.kafka.repartition !== 'never') wanted.push(repartitionTopicOf(config));
    const missing = [...new Set(wanted)].filter((t) => !existing.has(t));
    if (missing.length > 0) {
      await admin.createTopics({ waitForLeaders: true, topics: missing.map((topic) => ({ topic, numPartitions: config.kafka.topicPartitions })) });
    }
    return missing;
  } finally {
    await admin.disconnect();
  }
}
