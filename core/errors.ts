/**
 * The one error catalogue (STYLE.md). Every code is `VIGIL_ERR_<AREA>_<PROBLEM>`, documented in
 * docs/errors.md (a test checks both lists agree), and doubles as a low-cardinality metric label.
 */
export const ErrorCodes = {
  VIGIL_ERR_CONFIG_FILE: 'The configuration file could not be read or parsed.',
  VIGIL_ERR_CONFIG_UNKNOWN_KEY: 'A configuration key (file or VIGIL_* environment variable) is not in the schema.',
  VIGIL_ERR_CONFIG_INVALID: 'A configuration value has the wrong type or is out of range.',
  VIGIL_ERR_CLI_USAGE: 'The command line names an unknown command or option.',
  VIGIL_ERR_INFRA_INSTALL: 'A local service (Kafka, ClickHouse, Prometheus, Alertmanager) could not be installed.',
  VIGIL_ERR_INFRA_START: 'A local service exited or did not become ready; the message names its log file.',
  VIGIL_ERR_INFRA_PORT_BUSY: 'A local service port is taken by a process Vigil did not start.',
  VIGIL_ERR_DECODE_EMPTY: 'A message has no content (empty or only whitespace).',
  VIGIL_ERR_DECODE_TOO_LARGE: 'A message is larger than pipeline.maxMessageBytes.',
  VIGIL_ERR_DECODE_UTF8: 'A message is not valid UTF-8.',
  VIGIL_ERR_DECODE_JSON: 'A message (or one line of newline-delimited JSON) is not valid JSON.',
  VIGIL_ERR_DECODE_SHAPE: 'A JSON value is not a metric point, an array of points or {"metrics": [...]}.',
  VIGIL_ERR_DECODE_NAME: 'A point has no metric name, or the name is not a non-empty string.',
  VIGIL_ERR_DECODE_VALUE: 'A point value is missing, not a number, NaN or infinite.',
  VIGIL_ERR_DECODE_TIMESTAMP: 'A point timestamp is missing, unparseable, or outside the accepted range.',
  VIGIL_ERR_DECODE_TAGS: 'A point has tags that are not a flat object of string values.',
  VIGIL_ERR_DECODE_TENANT: 'A point or message claims a tenant that is not a valid name, or another tenant than its topic (or its message header) is: only the topic is trusted.',
  VIGIL_ERR_DECODE_TYPE: 'A point has a metric_type Vigil does not know.',
  VIGIL_ERR_DECODE_LINE_PROTOCOL: 'An Influx line-protocol line is malformed.',
  VIGIL_ERR_LIMIT_TAGS: 'A point has more tags than limits.maxTagsPerPoint, or a tag key or value longer than limits.maxTagKeyLength / maxTagValueLength.',
  VIGIL_ERR_LIMIT_NAME: 'A metric name is longer than limits.maxMetricNameLength.',
  VIGIL_ERR_LIMIT_FIELDS: 'A line-protocol line has more numeric or boolean fields than limits.maxFieldsPerLine.',
  VIGIL_ERR_LIMIT_CARDINALITY: 'A shard holds limits.maxSeriesPerShard series: points of new series are stored raw but not aggregated, scored or alerted on.',
  VIGIL_ERR_LIMIT_TENANT_SERIES: 'A shard holds tenants.maxSeriesPerShard series of the tenant: points of its new series are stored raw but not aggregated, scored or alerted on.',
  VIGIL_ERR_DECODE_INTERNAL: 'Decoding a message threw (input beyond a runtime limit, such as JSON nested deeper than the stack, or a decoder bug); the message is set aside whole.',
  VIGIL_ERR_CLICKHOUSE_UNAVAILABLE: 'ClickHouse did not answer (retryable).',
  VIGIL_ERR_CLICKHOUSE_INSERT: 'ClickHouse refused an insert for a reason of its own (a missing table or column, access, memory, too many parts); retried with backoff.',
  VIGIL_ERR_CLICKHOUSE_REJECTED: 'ClickHouse refused rows it can never store (a value it cannot parse or convert, a DEFAULT expression or constraint that throws): the insert is split down to those rows, which are dead-lettered with the server message; the rest is stored.',
  VIGIL_ERR_CLICKHOUSE_SCHEMA: 'A schema migration failed.',
  VIGIL_ERR_KAFKA_UNAVAILABLE: 'The Kafka cluster did not answer (retryable).',
  VIGIL_ERR_KAFKA_PRODUCE: 'Producing to Kafka (dead letters, alerts) failed.',
  VIGIL_ERR_KAFKA_CONSUMER: 'The Kafka consumer crashed with an error kafkajs does not restart from; the process exits for its supervisor to restart it.',
  VIGIL_ERR_WORKER_FAILED: 'A worker task threw; the batch is retried.',
  VIGIL_ERR_BACKTEST_INPUT: 'A backtest CSV row has a bad timestamp or value, or the header lacks timestamp/value (the message names the line).',
  VIGIL_ERR_MODEL_LOAD: 'An LSTM model directory is missing a file or holds weights that do not fit its metadata.',
  VIGIL_ERR_MODEL_TRAIN: 'Training found too little history (fewer windows than it needs) or failed.',
  VIGIL_ERR_RULES_FILE: 'The alert rules file could not be read, watched, or parsed as YAML/JSON.',
  VIGIL_ERR_RULES_INVALID: 'The alert rules file breaks the rules format; the message lists each problem with file:line:column.',
  VIGIL_ERR_ALERTMANAGER_SEND: 'A POST to Alertmanager failed (network, timeout, 408, 429, 5xx); retried with backoff.',
  VIGIL_ERR_ALERTMANAGER_REJECTED: 'Alertmanager answered another 4xx or a 3xx; the batch is dropped and counted.',
  VIGIL_ERR_WEBHOOK_SEND: 'A POST to the alert webhook failed (network, timeout, 408, 429, 5xx); retried with backoff.',
  VIGIL_ERR_WEBHOOK_REJECTED: 'The alert webhook answered another 4xx or a 3xx; the batch is dropped and counted.',
  VIGIL_ERR_SHUTDOWN_TIMEOUT: 'Draining did not finish within pipeline.shutdownTimeoutMs.',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class VigilError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; retryable?: boolean } = {}) {
    super(`${code}: ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'VigilError';
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

export function isVigilError(err: unknown, code?: ErrorCode): err is VigilError {
  return err instanceof VigilError && (code === undefined || err.code === code);
}
