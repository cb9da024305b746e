/**
 * Vigil's configuration schema: the single source of truth for every option, its type, range,
 * default and documentation. `vigil config --docs` renders it as the reference table in
 * README.md (a test keeps the two in step). Environment variables are derived from the key path:
 * `pipeline.maxInFlightBytes` is `VIGIL_PIPELINE_MAX_IN_FLIGHT_BYTES`.
 */
import { TENANT_NAME } from '../tenant.js';

type Leaf = {
  type: 'string' | 'integer' | 'number' | 'boolean' | 'array';
  description: string;
  default: unknown;
  enum?: readonly string[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  minItems?: number;
  items?: { type: 'string'; minLength?: number; pattern?: string; enum?: readonly string[] } | { type: 'integer'; minimum: number; maximum: number };
  pattern?: string;
  /** A credential: redacted wherever the configuration is shown, and settable from a file (`…_FILE`). */
  secret?: boolean;
};

type Section = {
  type: 'object';
  description: string;
  properties: Record<string, Leaf | Section | MapLeaf>;
};

/** A free-form map from a string key to an enumerated value (set from the file only). */
type MapLeaf = {
  type: 'object';
  description: string;
  default: Record<string, string>;
  additionalProperties: { type: 'string'; enum: readonly string[] } | { type: 'string'; pattern: string };
};

const port = (description: string, def: number): Leaf => ({
  type: 'integer',
  minimum: 1,
  maximum: 65535,
  description,
  default: def,
});

export const INPUT_FORMATS = ['auto', 'json', 'influx', 'prometheus'] as const;
export type InputFormat = (typeof INPUT_FORMATS)[number];

export const configSchema = {
  type: 'object',
  description: 'Vigil configuration',
  properties: {
    dataDir: {
      type: 'string',
      minLength: 1,
      description:
        'Directory for everything the local stack writes (Kafka log dirs, ClickHouse data, Prometheus TSDB, pid files, logs). Relative paths are resolved against the working directory.',
      default: '.vigil',
    },
    kafka: {
      type: 'object',
      description: 'Kafka connection and topics.',
      properties: {
        brokers: {
          type: 'array',
          minItems: 1,
          items: { type: 'string', minLength: 1 },
          description: 'Bootstrap brokers, `host:port`, comma-separated in the environment.',
          default: ['127.0.0.1:9092'],
        },
        clientId: { type: 'string', minLength: 1, description: 'Kafka client id.', default: 'vigil' },
        groupId: { type: 'string', minLength: 1, description: 'Consumer group id of the pipeline.', default: 'vigil' },
        topics: {
          type: 'array',
          items: { type: 'string', minLength: 1 },
          description: 'Metric topics to consume. Ignored when `kafka.topicPattern` is set.',
          default: ['metrics'],
        },
        topicPattern: {
          type: 'string',
          description: 'Regular expression of metric topics to consume instead of `kafka.topics` (empty: use the list).',
          default: '',
        },
        topicFormats: {
          type: 'object',
          description:
            'Input format fixed per topic (`json`, `influx`, `prometheus`); topics not listed are detected per message (`auto`). File only.',
          default: {},
          additionalProperties: { type: 'string', enum: INPUT_FORMATS },
        },
        dlqTopic: { type: 'string', minLength: 1, description: 'Dead-letter topic for bad input.', default: 'metrics-dlq' },
        alertsTopic: { type: 'string', minLength: 1, description: 'Topic alert events are produced to.', default: 'metrics-alerts' },
        topicPartitions: {
          type: 'integer',
          minimum: 1,
          maximum: 10000,
          description: 'Partitions of the topics Vigil creates when they are missing (metric topics of `kafka.topics`, dead letters, alerts).',
          default: 4,
        },
        repartition: {
          type: 'string',
          enum: ['auto', 'always', 'never'],
          description:
            'Whether points reach the stateful stages (rollups, detectors, rules) through the repartition topic, keyed by series, so each series is judged whole whatever partition its producer picked. `auto`: messages without a Kafka key are repartitioned, keyed ones (a key that is a function of the series: the series, its metric, its host) go straight on; `always`: every message; `never`: none (state per series and source partition, the behaviour before).',
          default: 'auto',
        },
        repartitionTopic: {
          type: 'string',
          description: 'The internal repartition topic (empty: `<kafka.groupId>-repartition`), created with `kafka.topicPartitions` partitions when missing. Its partition count fixes which partition a series lives in: change it only with an empty topic.',
          default: '',
        },
        fromBeginning: {
          type: 'boolean',
          description: 'Where a new consumer group starts on the metric topics: the earliest offset (true) or the latest (false). The repartition topic is always read from its earliest offset.',
          default: true,
        },
        maxWaitTimeMs: {
          type: 'integer',
          minimum: 10,
          maximum: 30000,
          description:
            'Longest a fetch waits on the broker for data. kafkajs also sleeps this long between checks while every partition is paused, so it bounds how fast consumption resumes after backpressure.',
          default: 250,
        },
        sessionTimeoutMs: {
          type: 'integer',
          minimum: 6000,
          maximum: 300000,
          description: 'Consumer group session timeout.',
          default: 30000,
        },
        ssl: { type: 'boolean', description: 'Connect to the brokers over TLS (also implied by `kafka.sslCaFile` or `kafka.sslCertFile`).', default: false },
        sslCaFile: { type: 'string', description: 'PEM file of the CA that signed the brokers\' certificates (empty: the system CAs).', default: '' },
        sslCertFile: { type: 'string', description: 'PEM client certificate for mutual TLS (with `kafka.sslKeyFile`).', default: '' },
        sslKeyFile: { type: 'string', description: 'PEM private key of the client certificate.', default: '' },
        sslRejectUnauthorized: { type: 'boolean', description: 'Verify the brokers\' certificates (false only for testing).', default: true },
        saslMechanism: {
          type: 'string',
          enum: ['', 'plain', 'scram-sha-256', 'scram-sha-512'],
          description: 'SASL authentication mechanism (empty: none). Use with TLS: PLAIN sends the password as it is.',
          default: '',
        },
        saslUsername: { type: 'string', description: 'SASL user name.', default: '' },
        saslPassword: { type: 'string', description: 'SASL password (`VIGIL_KAFKA_SASL_PASSWORD_FILE` reads it from a file).', default: '', secret: true },
      },
    },
    clickhouse: {
      type: 'object',
      description: 'ClickHouse connection.',
      properties: {
        url: { type: 'string', pattern: '^https?://', description: 'HTTP(S) endpoint.', default: 'http://127.0.0.1:8123' },
        failoverUrls: {
          type: 'array',
          items: { type: 'string', pattern: '^https?://' },
          description:
            'Other replicas of `clickhouse.cluster` (same credentials and TLS files), in order: when the current one does not answer, Vigil moves to the next and retries there, and stays until that one fails (counted in `vigil_clickhouse_failovers_total`). Needs `clickhouse.cluster`: replicated tables take an insert on any replica and drop a retried one that had landed.',
          default: [],
        },
        username: { type: 'string', description: 'User name.', default: 'default' },
        password: { type: 'string', description: 'Password (`VIGIL_CLICKHOUSE_PASSWORD_FILE` reads it from a file). A password in the URL\'s user info is used when this is empty.', default: '', secret: true },
        caFile: { type: 'string', description: 'PEM file of the CA that signed the server\'s certificate, for an `https://` URL (empty: the system CAs).', default: '' },
        certFile: { type: 'string', description: 'PEM client certificate for mutual TLS (with `clickhouse.keyFile`).', default: '' },
        keyFile: { type: 'string', description: 'PEM private key of the client certificate.', default: '' },
        database: {
          type: 'string',
          pattern: '^[A-Za-z_][A-Za-z0-9_]*$',
          description: 'Database Vigil creates and writes its tables in.',
          default: 'vigil',
        },
        compression: {
          type: 'string',
          enum: ['none', 'gzip'],
          description: 'Compression of insert bodies (done in the workers).',
          default: 'none',
        },
        requestTimeoutMs: {
          type: 'integer',
          minimum: 1000,
          maximum: 600000,
          description: 'Timeout of one HTTP request to ClickHouse.',
          default: 60000,
        },
        cluster: {
          type: 'string',
          pattern: '^([A-Za-z_][A-Za-z0-9_]*)?$',
          description:
            'A cluster of the server\'s `remote_servers` (empty: one server). Vigil then creates every table `ON CLUSTER` as a Replicated*MergeTree (ZooKeeper path `/clickhouse/tables/{shard}/<database>/<table>`, replica `{replica}` from the servers\' macros) and every view `ON CLUSTER`; it writes to `clickhouse.url` (or a replica of `clickhouse.failoverUrls` while that does not answer), and the replicas copy each other.',
          default: '',
        },
      },
    },
    http: {
      type: 'object',
      description: "Vigil's own HTTP server: /metrics, /healthz, /readyz.",
      properties: {
        host: { type: 'string', minLength: 1, description: 'Listen address.', default: '127.0.0.1' },
        port: port('Listen port (Prometheus scrapes /metrics here).', 9464),
      },
    },
    log: {
      type: 'object',
      description: 'Logging (pino, JSON lines on stdout).',
      properties: {
        level: {
          type: 'string',
          enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
          description: 'Minimum level logged.',
          default: 'info',
        },
      },
    },
    pipeline: {
      type: 'object',
      description: 'Batching, worker pool, backpressure and shutdown.',
      properties: {
        workers: {
          type: 'integer',
          minimum: 1,
          maximum: 256,
          description: 'Worker threads, one series shard each (a series belongs to shard series_id mod workers).',
          default: 2,
        },
        maxTasksInFlight: {
          type: 'integer',
          minimum: 1,
          maximum: 100000,
          description: 'Ingest tasks handed to the pool and not yet returned, at most; fetching waits above it.',
          default: 64,
        },
        seriesIdleTimeoutMs: {
          type: 'integer',
          minimum: 1000,
          maximum: 31536000000,
          description: 'State of a series silent for this long (wall time) is evicted from its shard.',
          default: 3600000,
        },
        taskMaxMessages: {
          type: 'integer',
          minimum: 1,
          maximum: 1000000,
          description: 'Messages per worker task at most.',
          default: 5000,
        },
        taskMaxBytes: {
          type: 'integer',
          minimum: 1024,
          maximum: 268435456,
          description: 'Bytes of message values per worker task at most.',
          default: 1048576,
        },
        taskLingerMs: {
          type: 'integer',
          minimum: 0,
          maximum: 60000,
          description: 'How long a partly filled task waits for more messages before it is sent.',
          default: 20,
        },
        maxInFlightBytes: {
          type: 'integer',
          minimum: 65536,
          maximum: 17179869184,
          description:
            'Message bytes consumed but not yet committed. Above it the consumer pauses its partitions; this bounds memory.',
          default: 67108864,
        },
        maxMessageBytes: {
          type: 'integer',
          minimum: 64,
          maximum: 104857600,
          description: 'Larger messages go to the dead-letter topic (VIGIL_ERR_DECODE_TOO_LARGE).',
          default: 1048576,
        },
        insertMaxRows: {
          type: 'integer',
          minimum: 1,
          maximum: 10000000,
          description: 'Rows per ClickHouse insert at most.',
          default: 200000,
        },
        insertLingerMs: {
          type: 'integer',
          minimum: 0,
          maximum: 60000,
          description: 'How long rows wait to fill an insert; keeps inserts to a few per second per table.',
          default: 500,
        },
        workerMaxHeapMb: {
          type: 'integer',
          minimum: 0,
          maximum: 1048576,
          description:
            "Cap on each worker thread's V8 old generation in MiB (worker resourceLimits): a runaway thread fails its task (the pipeline exits and resumes from its commits) instead of exhausting the machine. 0: V8's default. Size it above `limits.maxSeriesPerShard` × the per-series state (README, Anomaly detection).",
          default: 2048,
        },
        maxFutureMs: {
          type: 'integer',
          minimum: 0,
          maximum: 31536000000,
          description:
            'Points stamped further than this ahead of the wall clock are rejected (VIGIL_ERR_DECODE_TIMESTAMP): a clock running ahead is a fault, and the point would be scored against buckets no other series has reached.',
          default: 300000,
        },
        watermarkMaxAheadMs: {
          type: 'integer',
          minimum: 0,
          maximum: 31536000000,
          description:
            "How far past its message's Kafka timestamp a point may advance its partition's watermark. A point stamped later than that is stored and aggregated, but moves the watermark only to its message's timestamp plus this, so a few future-stamped points cannot make the partition's on-time points late. 0: a point cannot move the watermark past the moment its message was produced. Deterministic (the timestamp is in the log): a replay judges every point as the first run did. Messages without a timestamp (-1) are not capped.",
          default: 0,
        },
        retryInitialMs: {
          type: 'integer',
          minimum: 1,
          maximum: 60000,
          description: 'First backoff after a retryable sink failure (doubles up to `pipeline.retryMaxMs`).',
          default: 200,
        },
        retryMaxMs: {
          type: 'integer',
          minimum: 1,
          maximum: 600000,
          description: 'Longest backoff between retries.',
          default: 10000,
        },
        shutdownTimeoutMs: {
          type: 'integer',
          minimum: 0,
          maximum: 3600000,
          description: 'On SIGTERM/SIGINT, how long draining may take: at this deadline retries give up and Vigil exits with code 1, whatever is still pending (a second signal exits at once).',
          default: 30000,
        },
        stallTimeoutMs: {
          type: 'integer',
          minimum: 1000,
          maximum: 3600000,
          description: 'Readiness: while input waits (consumer lag or work in flight) and no offset commit has advanced for this long, /readyz answers 503 and `vigil_commit_stalled` is 1.',
          default: 60000,
        },
      },
    },
    rollups: {
      type: 'object',
      description: 'Event-time buckets per series (the `rollups` table and the closed-bucket stream detectors and rules read).',
      properties: {
        enabled: { type: 'boolean', description: 'Compute rollups and closed buckets.', default: true },
        widthsSeconds: {
          type: 'array',
          minItems: 1,
          items: { type: 'integer', minimum: 1, maximum: 86400 },
          description: 'Bucket widths in seconds; several run at once. Each must divide a day.',
          default: [10, 60],
        },
        allowedLatenessMs: {
          type: 'integer',
          minimum: 0,
          maximum: 86400000,
          description: 'The partition watermark is the highest event time seen minus this; a bucket closes when the watermark passes its end.',
          default: 10000,
        },
        lateRetentionMs: {
          type: 'integer',
          minimum: 0,
          maximum: 86400000,
          description:
            'How long (in watermark time) a closed bucket keeps absorbing late points as new versions of its row; later points get a correction row of their own. Offsets are committed only behind buckets still held.',
          default: 60000,
        },
        idleTimeoutMs: {
          type: 'integer',
          minimum: 100,
          maximum: 86400000,
          description:
            'A partition without messages for this long closes its buckets by wall time (minus the allowed lateness). Under kafka.repartition, also how often a source partition that forwards nothing reports its progress or its idleness to the repartition topic.',
          default: 30000,
        },
      },
    },
    models: {
      type: 'object',
      description: 'Anomaly detection on closed buckets (models/): the detectors, the ensemble and the `anomalies` table.',
      properties: {
        enabled: { type: 'boolean', description: 'Score closed buckets and write the `anomalies` table (needs rollups).', default: true },
        widthSeconds: {
          type: 'integer',
          minimum: 0,
          maximum: 86400,
          description: 'The rollup width whose closed buckets detectors score and alert rules read; one of `rollups.widthsSeconds`, 0: the widest of them.',
          default: 0,
        },
        detectors: {
          type: 'array',
          items: { type: 'string', enum: ['robust', 'ewma', 'seasonal', 'iforest', 'lstm'] },
          description: 'Detectors in the ensemble (`lstm` also needs `models.lstmModelDir`).',
          default: ['robust', 'ewma', 'seasonal', 'iforest', 'lstm'],
        },
        threshold: {
          type: 'number',
          minimum: 0,
          maximum: 1,
          description:
            'Ensemble score at or above which an episode of anomaly starts (`anomaly` = 1 on its first bucket; lower is more sensitive). A score is 1 − 2^(log10(p)/5) of the anomaly likelihood p: 0.5 is p = 1e-5, 0.75 is p = 1e-10.',
          default: 0.5,
        },
        learningBuckets: {
          type: 'integer',
          minimum: 0,
          maximum: 100000,
          description:
            "A series' learning period in buckets of `models.widthSeconds`: scores are written, but no episode starts (`anomaly` stays 0) before the series has this much history. 576 is two days at 5 min (the daily profile's warm-up, so daily edges are judged by a profile before an episode can start), about 10 h at 60 s; lower it for wide buckets.",
          default: 576,
        },
        seasonalPeriodsSeconds: {
          type: 'array',
          items: { type: 'integer', minimum: 60, maximum: 31536000 },
          minItems: 1,
          description: 'Candidate periods of the seasonal detector; per series, the one whose profile predicts best reports (an hour, a day, a week).',
          default: [3600, 86400, 604800],
        },
        seasonalMaxSlots: {
          type: 'integer',
          minimum: 2,
          maximum: 2016,
          description: 'Most profile slots per period: a period of at most this many buckets gets one slot per bucket, a longer one this many, interpolated.',
          default: 288,
        },
        robustWindow: { type: 'integer', minimum: 8, maximum: 1024, description: 'Buckets in the robust z-score\'s rolling median/MAD window.', default: 128 },
        ewmaAlpha: { type: 'number', minimum: 0.001, maximum: 1, description: 'Smoothing factor of the EWMA detector (mean and variance).', default: 0.1 },
        forestTrees: { type: 'integer', minimum: 1, maximum: 1000, description: 'Isolation forest trees (sklearn default 100).', default: 100 },
        forestSamples: { type: 'integer', minimum: 16, maximum: 4096, description: 'Isolation forest samples per tree (sklearn default 256).', default: 256 },
        forestRefitEvery: {
          type: 'integer',
          minimum: 256,
          maximum: 10000000,
          description: 'A shard refits its forest after this many scored buckets, on a reservoir sample of its recent feature vectors.',
          default: 16384,
        },
        lstmModelDir: {
          type: 'string',
          description: 'Directory of a model written by `vigil train` (model.json, weights.bin, metadata.json); empty: no LSTM.',
          default: '',
        },
        minScore: {
          type: 'number',
          minimum: 0,
          maximum: 1,
          description: 'Only buckets scoring at least this are written to `anomalies` (0: every scored bucket, the full record).',
          default: 0,
        },
        stateIntervalSeconds: {
          type: 'integer',
          minimum: 0,
          maximum: 86400,
          description:
            'How much event time the buckets judged on a partition may span before the detector and rule state of their series is written to `detector_state` (0: after every batch that judges one). Until then the partition\'s offsets are committed no further than the first of those buckets, so after a kill or a rebalance the next owner judges them again from the last state written, to the same scores; a drained shutdown writes it first.',
          default: 600,
        },
      },
    },
    forecasts: {
      type: 'object',
      description:
        'Forecasts (models/forecast.ts): for the series `series` selects, a forecast over `horizonSeconds` at `models.widthSeconds` with 80 % and 95 % intervals, made in the shard threads every `refreshSeconds` of event time and written to the `forecasts` table (`forecasts_latest`: the latest per series). Needs `models.enabled`.',
      properties: {
        series: {
          type: 'array',
          items: { type: 'string', minLength: 1 },
          description:
            'Selectors of the series to forecast, Prometheus style: a metric matcher and optional tag matchers, matched as alert rules match them (exact, glob or /regex/), e.g. `disk.used_percent{host="db-*"}`; empty: none.',
          default: [],
        },
        horizonSeconds: { type: 'integer', minimum: 60, maximum: 2592000, description: 'How far ahead each forecast reaches.', default: 86400 },
        stepSeconds: {
          type: 'integer',
          minimum: 0,
          maximum: 86400,
          description: 'Spacing of a forecast\'s rows (rounded to a multiple of `models.widthSeconds`; 0: one row per bucket of that width). 24 h at 60 s is 1,440 rows per series and forecast; 300 makes it 288.',
          default: 300,
        },
        refreshSeconds: { type: 'integer', minimum: 60, maximum: 604800, description: 'Event time between a series\' forecasts (aligned to multiples of it).', default: 3600 },
      },
    },
    incidents: {
      type: 'object',
      description:
        'Correlated incidents (`incidents` table): anomaly onsets of different series within `windowSeconds` of one another, grouped from the `anomalies` table every `intervalMs` (needs `models.enabled`); an incident over gets its related series (`vigil correlate`\'s measure).',
      properties: {
        enabled: { type: 'boolean', description: 'Group anomaly onsets into incidents.', default: true },
        windowSeconds: { type: 'integer', minimum: 1, maximum: 86400, description: 'Event time between two onsets of one incident at most; an incident is over once this long has passed after its last onset.', default: 600 },
        lookbackSeconds: { type: 'integer', minimum: 60, maximum: 2592000, description: 'Event time back from the newest scored bucket each pass reads onsets from.', default: 86400 },
        intervalMs: { type: 'integer', minimum: 1000, maximum: 86400000, description: 'Time between passes.', default: 60000 },
        relatedPatterns: { type: 'array', items: { type: 'string', minLength: 1 }, description: 'LIKE patterns of the series related ones are looked for among (empty: every metric).', default: [] },
        relatedThreshold: { type: 'number', minimum: 0, maximum: 1, description: '|r| at or above which a series is related to an incident (its first member\'s bucket means, at the best lag of up to 5 buckets).', default: 0.7 },
        relatedMax: { type: 'integer', minimum: 0, maximum: 1000, description: 'Related series kept per incident, strongest first.', default: 10 },
      },
    },
    alerts: {
      type: 'object',
      description: 'Alert rules on closed buckets of `models.widthSeconds` (workers/alerts/README.md) and their outputs.',
      properties: {
        enabled: { type: 'boolean', description: 'Evaluate the rules file (when one is set).', default: true },
        rulesFile: {
          type: 'string',
          description: 'YAML or JSON rules file, reloaded on change (rules/example.yaml holds the predefined rules); empty: no alerting.',
          default: '',
        },
        tenantRulesDir: {
          type: 'string',
          description:
            'Directory of tenants\' own rules files (README "Tenants"): `<tenant>.yaml` (or `.yml`, `.json`), in the rules file\'s format, whose rules match that tenant\'s series only and whose ids become `<tenant>/<id>`; reloaded on change with the rules file. Empty: none.',
          default: '',
        },
        alertmanagerUrl: {
          type: 'string',
          description: 'Prometheus Alertmanager base URL (e.g. http://127.0.0.1:9093) alerts are posted to (`/api/v2/alerts`); empty: off. User info in the URL is sent as basic auth.',
          default: '',
        },
        webhookUrl: { type: 'string', description: 'URL alert events are POSTed to as `{"version":1,"alerts":[...]}`, with retries; empty: off. User info in the URL (`https://user:pass@host/…`) is sent as basic auth.', default: '' },
        alertmanagerToken: { type: 'string', description: 'Bearer token sent to Alertmanager (`Authorization: Bearer …`); basic auth: user info in `alerts.alertmanagerUrl`.', default: '', secret: true },
        webhookToken: { type: 'string', description: 'Bearer token sent to the webhook.', default: '', secret: true },
      },
    },
    retention: {
      type: 'object',
      description:
        'How long each table keeps its rows, in days by event time (0: for ever). Servers with TTL (19.6+) get a table TTL; on older ones (18.16) Vigil drops whole expired daily partitions, and deletes a rollup width that expires before the others.',
      properties: {
        pointsDays: { type: 'integer', minimum: 0, maximum: 36500, description: 'Raw points (`points`, by `ts`).', default: 90 },
        rollupsDays: { type: 'integer', minimum: 0, maximum: 36500, description: 'Rollups (`rollups`, by `bucket_start`) of every width not in `retention.rollupsWidthDays`; also `metric_rollups` (per minute) unless `retention.rollupsWidthDays` lists 60.', default: 365 },
        rollupsWidthDays: {
          type: 'array',
          items: { type: 'string', pattern: '^[0-9]+:[0-9]+$' },
          description: 'Per rollup width, `seconds:days` (e.g. `10:7` keeps 10-second buckets a week), overriding `retention.rollupsDays`; `60:days` also sets how long `metric_rollups` (per minute) keeps.',
          default: [],
        },
        anomaliesDays: { type: 'integer', minimum: 0, maximum: 36500, description: 'Anomaly scores (`anomalies`, by `bucket_start`).', default: 90 },
        forecastsDays: { type: 'integer', minimum: 0, maximum: 36500, description: 'Forecasts (`forecasts`, by `issued_at`: when the forecast was made).', default: 30 },
        incidentsDays: { type: 'integer', minimum: 0, maximum: 36500, description: 'Incidents (`incidents`, by `started_at`; monthly partitions).', default: 365 },
        alertsDays: { type: 'integer', minimum: 0, maximum: 36500, description: 'Alert history (`alerts`, by `starts_at`; its partitions are months: one goes once its last day expired).', default: 365 },
        checkIntervalMs: {
          type: 'integer',
          minimum: 1000,
          maximum: 86400000,
          description: 'How often a running pipeline looks for expired partitions on servers without TTL (and once at start).',
          default: 3600000,
        },
      },
    },
    limits: {
      type: 'object',
      description: 'What one producer may send: input past a limit is dead-lettered with a VIGIL_ERR_LIMIT_* code (docs/errors.md) while the rest flows.',
      properties: {
        maxTagsPerPoint: {
          type: 'integer',
          minimum: 1,
          maximum: 100000,
          description: 'Most tags one point may carry (VIGIL_ERR_LIMIT_TAGS).',
          default: 64,
        },
        maxTagKeyLength: {
          type: 'integer',
          minimum: 1,
          maximum: 1000000,
          description: 'Longest tag key, in characters (VIGIL_ERR_LIMIT_TAGS).',
          default: 256,
        },
        maxTagValueLength: {
          type: 'integer',
          minimum: 1,
          maximum: 1000000,
          description: 'Longest tag value, in characters (VIGIL_ERR_LIMIT_TAGS).',
          default: 1024,
        },
        maxMetricNameLength: {
          type: 'integer',
          minimum: 1,
          maximum: 1000000,
          description: 'Longest metric name, in characters (VIGIL_ERR_LIMIT_NAME); a line-protocol name is `<measurement>.<field>`.',
          default: 1024,
        },
        maxFieldsPerLine: {
          type: 'integer',
          minimum: 1,
          maximum: 1000000,
          description: 'Most numeric or boolean fields one line-protocol line may carry, each a series (VIGIL_ERR_LIMIT_FIELDS).',
          default: 256,
        },
        maxSeriesPerShard: {
          type: 'integer',
          minimum: 1,
          maximum: 100000000,
          description:
            'Most series one shard holds state for (rollup buckets, detectors, rules). Past it, points of new series are still stored raw in `points`, but skip rollups, scoring and alerting and are reported in a VIGIL_ERR_LIMIT_CARDINALITY dead letter; known series keep flowing, and series silent for `pipeline.seriesIdleTimeoutMs` make room. Bounds memory in a cardinality burst.',
          default: 30000,
        },
      },
    },
    tenants: {
      type: 'object',
      description:
        'Tenants (issue 18; README "Tenants"). Every point has one: its topic\'s (`tenants.topics`), else its message\'s `tenants.header`, else its `tenants.tag`, else the default tenant (\'\'). The tenant is a column of every table and a field of every alert event, and part of the series\' identity. Only the topic is trusted: a point or message claiming another tenant than its topic\'s (or its header\'s) is dead-lettered with VIGIL_ERR_DECODE_TENANT.',
      properties: {
        tag: { type: 'string', description: 'Tag key naming a point\'s tenant (taken out of its tags); empty: none.', default: '' },
        header: { type: 'string', description: 'Kafka header naming a message\'s tenant; empty: none.', default: 'vigil-tenant' },
        topics: {
          type: 'object',
          description: 'Tenant per metric topic (`{"acme-metrics": "acme"}`): every point of the topic is the tenant\'s, whatever its tags or headers claim; Kafka ACLs on the topic decide who writes as the tenant. File only.',
          default: {},
          additionalProperties: { type: 'string', pattern: TENANT_NAME.source },
        },
        usersDir: {
          type: 'string',
          description:
            'Directory the ClickHouse server merges extra users from (`users.d` beside its users config), where `vigil tenants sync` writes a file per tenant user; empty: the local stack\'s (`<dataDir>/clickhouse-users/users.d`). On a server of your own, a directory Vigil can write that the server reads.',
          default: '',
        },
        maxSeriesPerShard: {
          type: 'integer',
          minimum: 1,
          maximum: 100000000,
          description:
            'Most series of one named tenant a shard holds state for (the default tenant has only `limits.maxSeriesPerShard`). Past it, points of the tenant\'s new series are stored raw but skip rollups, scoring and alerting, and are reported in a VIGIL_ERR_LIMIT_TENANT_SERIES dead letter (`vigil-tenant` header) and `vigil_tenant_series_refused_total{tenant}`: one tenant\'s cardinality storm cannot take the room of the others.',
          default: 10000,
        },
        readCluster: {
          type: 'string',
          minLength: 1,
          description:
            'Cluster in the server\'s `remote_servers` (one shard: the servers Vigil writes to, with Vigil\'s credentials) through which the tenant databases of `vigil tenants sync` read (18.16 checks a view\'s tables against the reading user; a Distributed table reads as the cluster\'s user). The local stack defines it.',
          default: 'vigil_tenants',
        },
      },
    },
    infra: {
      type: 'object',
      description: 'The local stack `vigil infra` and `npm start` run when no external Kafka/ClickHouse is configured.',
      properties: {
        mode: {
          type: 'string',
          enum: ['auto', 'on', 'off'],
          description:
            '`auto`: `npm start` and `npm test` bring the local stack up only while `kafka.brokers` and `clickhouse.url` are at their loopback defaults; `on`: always; `off`: never.',
          default: 'auto',
        },
        kafkaControllerPort: port('KRaft controller listener of the local Kafka.', 29093),
        kafkaSaslSslPort: port(
          'SASL_SSL listener of the local Kafka (SCRAM-SHA-256/512 and PLAIN for user `vigil`, password in `<dataDir>/tls/scram-password`, CA in `<dataDir>/tls/ca.pem`), for trying and testing the secured path.',
          9094,
        ),
        kafkaHeapMb: {
          type: 'integer',
          minimum: 128,
          maximum: 16384,
          description: 'Java heap of the local Kafka.',
          default: 1024,
        },
        clickhouseTcpPort: port('Native TCP port of the local ClickHouse (clickhouse-client).', 9000),
        clickhouseInterserverPort: port('Interserver HTTP port of the local ClickHouse.', 9009),
        clickhouseHttpsPort: port(
          'HTTPS port of the local ClickHouse (server certificate from `<dataDir>/tls/ca.pem`; a client certificate signed by it is required: `<dataDir>/tls/client.pem` and `client-key.pem`), for trying and testing the secured path.',
          8443,
        ),
        clickhouseReplicas: {
          type: 'integer',
          minimum: 1,
          maximum: 2,
          description:
            'ClickHouse servers the local stack runs. 2: a two-replica cluster on this machine (named `clickhouse.cluster`, or `vigil` when that is empty) with a local ZooKeeper; the second server listens on each ClickHouse port plus 1 and keeps its data in `<dataDir>/clickhouse-2`.',
          default: 1,
        },
        zookeeperPort: port('Client port of the local ZooKeeper (started only with `infra.clickhouseReplicas` 2).', 2181),
        prometheusPort: port('Port of the local Prometheus.', 9090),
        alertmanagerPort: port('Port of the local Alertmanager.', 9093),
        readyTimeoutMs: {
          type: 'integer',
          minimum: 1000,
          maximum: 600000,
          description: 'How long `infra up` waits for each service to become ready.',
          default: 90000,
        },
      },
    },
  },
} as const satisfies Section;

export type SchemaNode = Leaf | Section | MapLeaf;

export function isSection(node: SchemaNode): node is Section {
  return node.type === 'object' && 'properties' in node;
}

/** Each configurable leaf with its dotted path, in schema order. */
export function leaves(node: Section = configSchema, prefix = ''): { path: string; leaf: Leaf | MapLeaf }[] {
  const out: { path: string; leaf: Leaf | MapLeaf }[] = [];
  for (const [key, child] of Object.entries(node.properties)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (isSection(child)) out.push(...leaves(child, path));
    else out.push({ path, leaf: child });
  }
  return out;
}

/** `pipeline.maxInFlightBytes` → `VIGIL_PIPELINE_MAX_IN_FLIGHT_BYTES`. */
export function envName(path: string): string {
  return 'VIGIL_' + path.split('.').map((s) => s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_');
}
