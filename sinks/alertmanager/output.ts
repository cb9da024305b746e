import type { AlertEvent } from '../alerts/event.js';
import { componentLogger } from '../../core/log.js';
import { AlertsOutput, optionInt, type AlertsOutputOptions } from '../alerts/output.js';
import { toAlertmanagerAlert, type AlertmanagerAlert } from './mapping.js';

export interface AlertmanagerOutputOptions extends AlertsOutputOptions {
  /** Alertmanager's base URL, e.g. `http://127.0.0.1:9093` (a route prefix is kept); alerts go to `{url}/api/v2/alerts`. */
  url: string;
  /**
   * Every firing alert the output owns is sent again this often, with endsAt = now +
   * RESEND_ENDS_AT_FACTOR × this, as Prometheus does every `resend_delay`: Alertmanager resolves
   * an alert by itself once its endsAt passes. Default 60000.
   */
  resendIntervalMs?: number;
  /** Resolved alerts are re-sent with the firing ones for this long (Prometheus: 15 min), for an Alertmanager that missed the first. 0: sent once. Default 900000. */
  resolvedRetentionMs?: number;
  /** `generatorURL` of every alert (e.g. a dashboard). Default none. */
  generatorURL?: string;
  /** Alerts per POST. Default 64 (Prometheus' notifier batch). */
  maxBatch?: number;
}

export const ALERTMANAGER_DEFAULTS = {
  resendIntervalMs: 60_000,
  resolvedRetentionMs: 15 * 60_000,
  maxBatch: 64,
} as const;

/** A firing alert's endsAt is now + this × resendIntervalMs: it survives three lost re-sends (Prometheus uses 4 too). */
export const RESEND_ENDS_AT_FACTOR = 4;

interface Item {
  readonly fingerprint: string;
  readonly alert: AlertmanagerAlert;
  readonly firing: boolean;
}

/**
 * Sends alert events to Alertmanager's v2 API. Alertmanager takes states, not events: queued
 * updates of one fingerprint replace each other, and the output owns the set of its firing
 * alerts (at most maxQueue), which it re-sends every resendIntervalMs. close() does not resolve
 * them: after a restart, the rule engine's state takes over before their endsAt passes.
 */
export class AlertmanagerOutput extends AlertsOutput<Item> {
  private readonly firing = new Map<string, Item>();
  /** Recently resolved, in the order they resolved (what the retention cut and the track limit evict first). */
  private readonly resolved = new Map<string, { item: Item; atMs: number }>();
  private readonly resendIntervalMs: number;
  private readonly resolvedRetentionMs: number;
  private readonly generatorURL: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private untrackedLogged = false;

  constructor(options: AlertmanagerOutputOptions) {
    const resendIntervalMs = optionInt('alertmanager.resendIntervalMs', options.resendIntervalMs, ALERTMANAGER_DEFAULTS.resendIntervalMs);
    super(
      'alertmanager',
      options,
      {
        endpoint: (url) => new URL(`${url.pathname.replace(/\/+$/, '')}/api/v2/alerts`, url),
        maxBatch: ALERTMANAGER_DEFAULTS.maxBatch,
        // Retried until delivered or superseded: the queue holds one state per fingerprint.
        maxAttempts: 0,
        codes: { send: 'VIGIL_ERR_ALERTMANAGER_SEND', rejected: 'VIGIL_ERR_ALERTMANAGER_REJECTED' },
        isPriority: (item) => !item.firing,
        key: (item) => item.fingerprint,
        encode: (items) => {
          // Set per attempt, so an alert that waited in the queue does not arrive already expired.
          const endsAt = new Date(Date.now() + RESEND_ENDS_AT_FACTOR * resendIntervalMs).toISOString();
          return JSON.stringify(items.map((i) => (i.firing ? { ...i.alert, endsAt: endsAt < i.alert.startsAt ? i.alert.startsAt : endsAt } : i.alert)));
        },
      },
      options.logger ?? componentLogger('alertmanager-output'),
    );
    this.resendIntervalMs = resendIntervalMs;
    this.resolvedRetentionMs = optionInt('alertmanager.resolvedRetentionMs', options.resolvedRetentionMs, ALERTMANAGER_DEFAULTS.resolvedRetentionMs, 0);
    this.generatorURL = options.generatorURL;
  }

  /** Firing alerts the output re-sends. */
  get firingAlerts(): number {
    return this.firing.size;
  }

  /** Queues the event's state for the next POST; never throws, never waits. */
  send(event: AlertEvent): void {
    try {
      const fp = event.fingerprint;
      const alert = toAlertmanagerAlert(event, this.generatorURL);
      let item: Item;
      if (event.status === 'firing') {
        item = { fingerprint: fp, alert, firing: true };
        this.resolved.delete(fp);
        if (this.firing.has(fp) || this.roomToTrack()) this.firing.set(fp, item);
        else this.untracked(fp);
      } else {
        const prev = this.firing.get(fp);
        // The firing alert's exact label set, or Alertmanager would take it for another alert.
        item = { fingerprint: fp, alert: prev ? { ...alert, labels: prev.alert.labels } : alert, firing: false };
        this.firing.delete(fp);
        this.resolved.delete(fp);
        if (this.resolvedRetentionMs > 0 && this.roomToTrack()) this.resolved.set(fp, { item, atMs: Date.now() });
      }
      this.sender.enqueue(item);
    } catch (err) {
      this.log.error({ err, fingerprint: event.fingerprint }, 'alert event could not be mapped for Alertmanager');
      this.stats.onDropped(1, 'invalid');
    }
  }

  /** Starts sending and re-sending. */
  override start(): void {
    super.start();
    // Unref'd: re-sending alone does not keep the process alive.
    this.timer ??= setInterval(() => this.resend(), this.resendIntervalMs).unref();
  }

  override async close(timeoutMs?: number): Promise<void> {
    clearInterval(this.timer);
    await super.close(timeoutMs);
  }

  private resend(): void {
    const cutoff = Date.now() - this.resolvedRetentionMs;
    for (const [fp, r] of this.resolved) {
      if (r.atMs > cutoff) break;
      this.resolved.delete(fp);
    }
    for (const item of this.firing.values()) this.sender.enqueue(item);
    for (const { item } of this.resolved.values()) this.sender.enqueue(item);
  }

  /** Tracked alerts are bounded by maxQueue, so one re-send round always fits in the queue. */
  private roomToTrack(): boolean {
    if (this.firing.size + this.resolved.size < this.maxQueue) return true;
    const oldest = this.resolved.keys().next();
    if (oldest.done) return false;
    this.resolved.delete(oldest.value);
    return true;
  }

  private untracked(fingerprint: string): void {
    this.stats.onDropped(1, 'untracked');
    if (this.untrackedLogged) return;
    this.untrackedLogged = true;
    this.log.warn({ fingerprint, maxQueue: this.maxQueue }, 'more firing alerts than maxQueue: new ones are sent once, not re-sent');
  }
}
