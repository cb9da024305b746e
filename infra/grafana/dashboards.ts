import type { Dashboard, DataSourceRef, FieldConfigSource, MappingType, Panel, ThresholdsMode, VariableModel } from '@grafana/schema';

/**
 * Grafana dashboards over Vigil's ClickHouse tables (issue 16), generated from code for the
 * ClickHouse data source plugin (grafana-clickhouse-datasource, v4): a series explorer, the
 * anomalies with expected value, band and score, the alerts (timeline and what fires now), and an
 * overview with the pipeline's health as the tables see it. The pipeline's own metrics have their
 * dashboard on Prometheus (vigil-self.json). `vigil dashboards` writes them;
 * infra/docker/grafana/dashboards holds them for docker-compose's Grafana, and a test keeps those
 * files equal to this code's output.
 *
 * Every query follows README "Reading at scale": `points` read as it is (each point stored once),
 * the other tables with the filters on the table read with `FINAL` (exactly the rows of the views;
 * 18.16 does not push a WHERE into a view), in sorting-key order.
 * Macros are the plugin's (`$__timeFilter(col)`, `$__fromTime`, `$__toTime`, `$__interval_s`), in
 * SQL that 18.16 runs; variables Grafana's `${name}`.
 */

/** The data source uids of infra/docker/grafana/provisioning/datasources/vigil.yml. */
export const CLICKHOUSE: DataSourceRef = { type: 'grafana-clickhouse-datasource', uid: 'clickhouse' };

/** The plugin's `format`: how the backend shapes the rows (long rows become one field per series). */
const FORMAT = { timeseries: 0, table: 1 } as const;

export interface DashboardOptions {
  /** The ClickHouse database (`clickhouse.database`). */
  database: string;
  /** `models.threshold`: the score line on the anomaly panels. */
  threshold: number;
}

/** A series' tags as one label, `k=v,k=v` (the tag arrays are sorted by key). */
const TAGS_LABEL = "arrayStringConcat(arrayMap((k, v) -> concat(k, '=', v), tags.key, tags.value), ',')";

/** The explorer's tag filter: everything (`*`, the value of All), or the series whose `${tag_key}` tag is `${tag_value}`. */
const TAG_FILTER = "('${tag_value}' = '*' OR tags.value[indexOf(tags.key, '${tag_key}')] = '${tag_value}')";

/**
 * The start of `column`'s interval of the panel (`$__interval_s` seconds). The plugin's
 * `$__timeInterval(column)` expands to `toStartOfInterval`, which ClickHouse 18.16 does not have.
 */
const per = (column: string): string => `toDateTime(intDiv(toUInt32(${column}), $__interval_s) * $__interval_s)`;

interface Layout {
  y: number;
  x: number;
}

function target(sql: string, format: keyof typeof FORMAT, refId = 'A'): Record<string, unknown> {
  return { refId, datasource: CLICKHOUSE, editorType: 'sql', format: FORMAT[format], queryType: format === 'timeseries' ? 'timeseries' : 'table', rawSql: sql };
}

/** Panels laid out left to right in rows of 24 columns. */
class Panels {
  private readonly list: Panel[] = [];
  private at: Layout = { x: 0, y: 0 };
  private rowHeight = 0;

  add(panel: Omit<Panel, 'id' | 'gridPos'>, w: number, h: number): this {
    if (this.at.x + w > 24) this.at = { x: 0, y: this.at.y + this.rowHeight };
    if (this.at.x === 0) this.rowHeight = 0;
    this.list.push({ ...panel, id: this.list.length + 1, datasource: CLICKHOUSE, gridPos: { x: this.at.x, y: this.at.y, w, h } });
    this.at = { x: this.at.x + w, y: this.at.y };
    this.rowHeight = Math.max(this.rowHeight, h);
    return this;
  }

  get panels(): Panel[] {
    return this.list;
  }
}

function timeseries(title: string, description: string, sql: string, fieldConfig: FieldConfigSource = { defaults: {}, overrides: [] }): Omit<Panel, 'id' | 'gridPos'> {
  return {
    type: 'timeseries',
    title,
    description,
    targets: [target(sql, 'timeseries')],
    fieldConfig: { ...fieldConfig, defaults: { custom: { drawStyle: 'line', lineWidth: 1, fillOpacity: 0, showPoints: 'never', spanNulls: false }, ...fieldConfig.defaults } },
    options: { legend: { displayMode: 'list', placement: 'bottom', showLegend: true }, tooltip: { mode: 'multi', sort: 'desc' } },
  };
}

function table(title: string, description: string, sql: string): Omit<Panel, 'id' | 'gridPos'> {
  return { type: 'table', title, description, targets: [target(sql, 'table')], fieldConfig: { defaults: {}, overrides: [] }, options: { showHeader: true } };
}

/** Fills between two fields of a time series (the band): `upper` fills down to `lower`. */
function band(lower: string, upper: string): FieldConfigSource {
  const named = (name: string, properties: { id: string; value: unknown }[]) => ({ matcher: { id: 'byName', options: name }, properties });
  return {
    defaults: {},
    overrides: [
      named(upper, [
        { id: 'custom.fillBelowTo', value: lower },
        { id: 'custom.fillOpacity', value: 20 },
        { id: 'custom.lineWidth', value: 0 },
        { id: 'color', value: { mode: 'fixed', fixedColor: 'blue' } },
      ]),
      named(lower, [
        { id: 'custom.lineWidth', value: 0 },
        { id: 'color', value: { mode: 'fixed', fixedColor: 'blue' } },
      ]),
    ],
  };
}

function queryVariable(name: string, label: string, sql: string, extra: Partial<VariableModel> = {}): VariableModel {
  return { name, label, type: 'query', datasource: CLICKHOUSE, query: sql, refresh: 2, sort: 1, ...extra };
}

/** `metric` (those with buckets in the time range) and `width` (the metric's bucket widths) of a per-bucket table. */
function metricAndWidth(table: string): VariableModel[] {
  return [
    queryVariable('metric', 'Metric', `SELECT DISTINCT metric FROM ${table} WHERE $__timeFilter(bucket_start) ORDER BY metric`),
    queryVariable('width', 'Width (s)', `SELECT DISTINCT width_s FROM ${table} WHERE metric = '\${metric}' AND $__timeFilter(bucket_start) ORDER BY width_s`),
  ];
}

function dashboard(uid: string, title: string, description: string, panels: Panel[], variables: VariableModel[], from = 'now-6h'): Dashboard {
  return {
    uid,
    title,
    description,
    tags: ['vigil'],
    timezone: 'browser',
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    refresh: '30s',
    time: { from, to: 'now' },
    timepicker: {},
    templating: { list: variables },
    annotations: { list: [] },
    links: [{ title: 'Vigil', type: 'dashboards', tags: ['vigil'], asDropdown: true, icon: 'external link', includeVars: false, keepTime: true, targetBlank: false, tooltip: '', url: '' }],
    panels,
  };
}

function explorer(o: DashboardOptions): Dashboard {
  const db = o.database;
  const rollups = (where: string) =>
    `FROM ${db}.rollups FINAL WHERE metric = '\${metric}' AND width_s = \${width} AND $__timeFilter(bucket_start) AND ${TAG_FILTER}${where}`;
  const panels = new Panels()
    .add(
      timeseries(
        'Mean per series (the 20 highest)',
        'Bucket means of the selected series at the selected width (rollups, merged over partitions and corrections like rollups_merged); counters are per-second rates.',
        `SELECT bucket_start AS time, series, sum(s) / sum(c) AS mean FROM (SELECT bucket_start, ${TAGS_LABEL} AS series, count AS c, sum AS s ${rollups(
          ` AND series_id IN (SELECT series_id ${rollups('')} GROUP BY series_id ORDER BY max(max) DESC LIMIT 20)`,
        )}) GROUP BY series, time ORDER BY time`,
      ),
      24,
      9,
    )
    .add(
      timeseries(
        'Min, mean and max of the selection',
        'Per bucket over the selected series: the lowest minimum, the mean of all their points, the highest maximum (the band).',
        `SELECT bucket_start AS time, min(mn) AS min, sum(s) / sum(c) AS mean, max(mx) AS max FROM (SELECT bucket_start, count AS c, sum AS s, min AS mn, max AS mx ${rollups('')}) GROUP BY time ORDER BY time`,
        band('min', 'max'),
      ),
      16,
      8,
    )
    .add(
      timeseries(
        'Points stored',
        'Raw points of the selected series per interval (points: each point stored once).',
        `SELECT ${per('ts')} AS time, count() AS points FROM ${db}.points WHERE metric = '\${metric}' AND $__timeFilter(ts) AND ${TAG_FILTER} GROUP BY time ORDER BY time`,
      ),
      8,
      8,
    )
    .add(
      table(
        'Latest points',
        'The newest point of each selected series in the time range.',
        `SELECT ${TAGS_LABEL} AS series, argMax(value, ts_ms) AS value, max(ts) AS at, count() AS points FROM ${db}.points WHERE metric = '\${metric}' AND $__timeFilter(ts) AND ${TAG_FILTER} GROUP BY series ORDER BY series LIMIT 200`,
      ),
      24,
      8,
    );
  return dashboard(
    'vigil-explorer',
    'Vigil — series explorer',
    'Any metric and tag: rollups per series, their min/max band, raw points.',
    panels.panels,
    [
      ...metricAndWidth(`${db}.rollups`),
      queryVariable('tag_key', 'Tag', `SELECT DISTINCT arrayJoin(tags.key) FROM ${db}.rollups WHERE metric = '\${metric}' AND $__timeFilter(bucket_start)`),
      queryVariable('tag_value', 'Value', `SELECT DISTINCT tags.value[indexOf(tags.key, '\${tag_key}')] AS v FROM ${db}.rollups WHERE metric = '\${metric}' AND has(tags.key, '\${tag_key}') AND $__timeFilter(bucket_start) ORDER BY v LIMIT 1000`, {
        includeAll: true,
        allValue: '*',
        current: { text: 'All', value: '$__all' },
      }),
    ],
  );
}

function anomalies(o: DashboardOptions): Dashboard {
  const db = o.database;
  const oneSeries = `FROM ${db}.anomalies FINAL WHERE metric = '\${metric}' AND series_id = \${series} AND width_s = \${width} AND $__timeFilter(bucket_start)`;
  const flagged = '$__timeFilter(bucket_start) AND anomaly = 1';
  const panels = new Panels()
    .add(
      timeseries(
        'Value, expected value and band',
        "The bucket mean the detectors scored, what the best detector expected, and its band (lower to upper).",
        `SELECT bucket_start AS time, value, expected, lower, upper ${oneSeries} ORDER BY time`,
        band('lower', 'upper'),
      ),
      24,
      9,
    )
    .add(
      timeseries(
        'Ensemble score and detectors',
        `The ensemble score in [0, 1] (an episode starts at models.threshold = ${o.threshold}) and each detector's.`,
        `SELECT bucket_start AS time, score, score_robust, score_ewma, score_seasonal, score_iforest, score_lstm ${oneSeries} ORDER BY time`,
        {
          defaults: { min: 0, max: 1, thresholds: { mode: 'absolute' as ThresholdsMode, steps: [{ color: 'transparent', value: null }, { color: 'red', value: o.threshold }] }, custom: { thresholdsStyle: { mode: 'line' } } },
          overrides: [],
        },
      ),
      24,
      8,
    )
    .add(
      table(
        'Flagged buckets of the metric',
        'The first bucket of each anomaly episode of the metric, with what drove the score.',
        `SELECT bucket_start AS time, ${TAGS_LABEL} AS series, value, expected, lower, upper, score, explanation FROM ${db}.anomalies FINAL WHERE metric = '\${metric}' AND width_s = \${width} AND ${flagged} ORDER BY time DESC LIMIT 500`,
      ),
      16,
      9,
    )
    .add(
      table(
        'Flagged per metric',
        'Anomaly episodes started in the time range, per metric.',
        // Every metric's rows in the range: the flagged buckets' latest versions, not FINAL (README "Reading at scale").
        `SELECT metric, count() AS episodes, max(score) AS top_score FROM (SELECT metric, argMax(score, version) AS score FROM ${db}.anomalies ` +
          `WHERE $__timeFilter(bucket_start) AND (series_id, width_s, bucket_start) IN (SELECT series_id, width_s, bucket_start FROM ${db}.anomalies WHERE ${flagged}) ` +
          'GROUP BY metric, series_id, width_s, bucket_start HAVING argMax(anomaly, version) = 1) GROUP BY metric ORDER BY episodes DESC',
      ),
      8,
      9,
    );
  return dashboard(
    'vigil-anomalies',
    'Vigil — anomalies',
    "The detectors' view of one series: value, expected value, band, scores; the flagged buckets of its metric.",
    panels.panels,
    [
      ...metricAndWidth(`${db}.anomalies`),
      queryVariable(
        'series',
        'Series',
        `SELECT ${TAGS_LABEL} AS __text, toString(series_id) AS __value FROM ${db}.anomalies WHERE metric = '\${metric}' AND width_s = \${width} AND $__timeFilter(bucket_start) GROUP BY series_id, tags.key, tags.value ORDER BY max(score) DESC LIMIT 500`,
        { sort: 0 },
      ),
    ],
  );
}

function alerts(o: DashboardOptions): Dashboard {
  const db = o.database;
  const summary = "visitParamExtractString(annotations, 'summary')";
  const panels = new Panels()
    .add(
      table(
        'Firing now',
        'Alerts whose latest event is a firing one (alerts, deduplicated: one row per event).',
        `SELECT rule_name, severity, metric, series, starts_at, value, summary FROM (SELECT fingerprint, argMax(status, observed_ms) AS status, argMax(rule_name, observed_ms) AS rule_name, argMax(severity, observed_ms) AS severity, argMax(metric, observed_ms) AS metric, argMax(${TAGS_LABEL}, observed_ms) AS series, argMax(starts_at, observed_ms) AS starts_at, argMax(value, observed_ms) AS value, argMax(${summary}, observed_ms) AS summary FROM ${db}.alerts FINAL GROUP BY fingerprint) WHERE status = 'firing' ORDER BY starts_at`,
      ),
      24,
      7,
    )
    .add(
      {
        ...timeseries(
          'Alert timeline',
          'Each alert (rule and series) over time: 1 from its start while it fires, 0 from its end.',
          `SELECT if(status = 'firing', starts_at, ifNull(ends_at, observed_at)) AS time, concat(rule_name, ' ', ${TAGS_LABEL}) AS alert, if(status = 'firing', 1, 0) AS firing FROM ${db}.alerts FINAL WHERE ($__timeFilter(starts_at) OR ends_at IS NULL OR ends_at >= $__fromTime) ORDER BY time`,
        ),
        type: 'state-timeline',
        fieldConfig: {
          defaults: {
            mappings: [{ type: 'value' as MappingType.ValueToText, options: { '0': { text: 'resolved', color: 'green' }, '1': { text: 'firing', color: 'red' } } }],
            custom: { fillOpacity: 80, lineWidth: 0 },
          },
          overrides: [],
        },
        options: { mergeValues: true, showValue: 'never', alignValue: 'left', rowHeight: 0.8, legend: { displayMode: 'list', placement: 'bottom', showLegend: false }, tooltip: { mode: 'single', sort: 'none' } },
      },
      24,
      9,
    )
    .add(
      table(
        'Events',
        'Every firing and resolved event in the time range, newest first.',
        `SELECT observed_at, status, rule_name, rule_kind, severity, metric, ${TAGS_LABEL} AS series, value, threshold, score, starts_at, ends_at, ${summary} AS summary FROM ${db}.alerts FINAL WHERE $__timeFilter(observed_at) ORDER BY observed_ms DESC LIMIT 500`,
      ),
      16,
      9,
    )
    .add(
      table(
        'Events per rule',
        'Firing and resolved events per rule in the time range.',
        `SELECT rule_name, countIf(status = 'firing') AS fired, countIf(status = 'resolved') AS resolved FROM ${db}.alerts FINAL WHERE $__timeFilter(observed_at) GROUP BY rule_name ORDER BY fired DESC`,
      ),
      8,
      9,
    );
  return dashboard('vigil-alerts', 'Vigil — alerts', 'What fires now, the alert timeline and every event (the alerts table).', panels.panels, []);
}

function overview(o: DashboardOptions): Dashboard {
  const db = o.database;
  const perInterval = (title: string, description: string, sql: string) => timeseries(title, description, sql);
  const panels = new Panels()
    .add(perInterval('Points stored', 'Raw points per interval, by metric (points: each point stored once).', `SELECT ${per('ts')} AS time, metric, count() AS points FROM ${db}.points WHERE $__timeFilter(ts) GROUP BY time, metric ORDER BY time`), 12, 8)
    .add(
      perInterval(
        'Rollup buckets',
        'Rollup buckets per interval, by width (rollups, deduplicated; late corrections add rows of their own).',
        `SELECT ${per('bucket_start')} AS time, concat(toString(width_s), ' s') AS width, count() AS buckets FROM ${db}.rollups FINAL WHERE $__timeFilter(bucket_start) GROUP BY time, width ORDER BY time`,
      ),
      12,
      8,
    )
    .add(
      perInterval(
        'Buckets scored and flagged',
        'Anomaly rows per interval and the first buckets of episodes among them.',
        `SELECT ${per('bucket_start')} AS time, count() AS scored, sum(anomaly) AS flagged FROM ${db}.anomalies FINAL WHERE $__timeFilter(bucket_start) GROUP BY time ORDER BY time`,
      ),
      12,
      8,
    )
    .add(
      perInterval(
        'Alert events',
        'Firing and resolved events per interval.',
        `SELECT ${per('observed_at')} AS time, countIf(status = 'firing') AS fired, countIf(status = 'resolved') AS resolved FROM ${db}.alerts FINAL WHERE $__timeFilter(observed_at) GROUP BY time ORDER BY time`,
      ),
      12,
      8,
    )
    .add(
      table(
        'Freshness per metric',
        'The newest point of each metric and how far behind the end of the time range it is (a stalled producer or pipeline shows here first).',
        `SELECT metric, max(ts) AS newest, toInt64($__toTime) - toInt64(max(ts)) AS seconds_behind, uniqExact(series_id) AS series, count() AS points FROM ${db}.points WHERE $__timeFilter(ts) GROUP BY metric ORDER BY seconds_behind DESC`,
      ),
      24,
      8,
    );
  return dashboard('vigil-overview', 'Vigil — overview', "What reaches ClickHouse: points, rollups, scores and alerts per interval, and each metric's freshness. The pipeline's own metrics: Vigil — pipeline health.", panels.panels, [], 'now-1h');
}

/** Every generated dashboard, by file name. */
export function dashboards(o: DashboardOptions): Record<string, Dashboard> {
  return {
    'vigil-overview.json': overview(o),
    'vigil-explorer.json': explorer(o),
    'vigil-anomalies.json': anomalies(o),
    'vigil-alerts.json': alerts(o),
  };
}

/** A dashboard as provisioned files hold it. */
export function dashboardJson(d: Dashboard): string {
  return `${JSON.stringify(d, null, 2)}\n`;
}
