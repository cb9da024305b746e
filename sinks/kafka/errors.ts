/**
 * Kafka errors a retry cannot fix: the broker refused the records themselves (too large for the
 * topic's `max.message.bytes` or the request limit, or invalid for the topic), as opposed to a
 * broker, leader or network that is away for a while. kafkajs wraps the protocol error in
 * KafkaJSNonRetriableError / KafkaJSNumberOfRetriesExceeded, so the cause chain is searched.
 */
const PERMANENT = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD', 'INVALID_TIMESTAMP']);

export function isPermanentProduceError(err: unknown): boolean {
  for (let e = err, depth = 0; e !== null && typeof e === 'object' && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const type = (e as { type?: unknown }).type;
    if (typeof type === 'string' && PERMANENT.has(type)) return true;
  }
  return false;
}
