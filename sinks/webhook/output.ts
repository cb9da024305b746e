import type { AlertEvent } from '../alerts/event.js';
import { componentLogger } from '../../core/log.js';
import { AlertsOutput, optionInt, type AlertsOutputOptions } from '../alerts/output.js';

export interface WebhookOutputOptions extends AlertsOutputOptions {
  /** Where alerts are POSTed. */
  url: string;
  /** Failed POSTs before an event is dropped ('max_attempts'); 0: retried while the queue has room. Default 0. */
  maxAttempts?: number;
  /** Events per POST. Default 100. */
  maxBatch?: number;
}

export const WEBHOOK_DEFAULTS = { maxAttempts: 0, maxBatch: 100 } as const;

/** The body: `{"version":1,"alerts":[AlertEvent, ...]}`, events as on the alerts topic, oldest first. */
export const WEBHOOK_BODY_VERSION = 1;

interface Item {
  /** Serialised when sent, so a caller mutating the event later changes nothing. */
  readonly json: string;
  readonly resolved: boolean;
}

/**
 * POSTs every alert event (no coalescing: receivers see each state change and dedupe on `id`)
 * to a URL. 2xx acknowledges; 408, 429, 5xx and network errors are retried; any other status
 * drops the batch ('rejected').
 */
export class WebhookOutput extends AlertsOutput<Item> {
  constructor(options: WebhookOutputOptions) {
    super(
      'webhook',
      options,
      {
        endpoint: (url) => url,
        maxBatch: WEBHOOK_DEFAULTS.maxBatch,
        maxAttempts: optionInt('webhook.maxAttempts', options.maxAttempts, WEBHOOK_DEFAULTS.maxAttempts, 0),
        codes: { send: 'VIGIL_ERR_WEBHOOK_SEND', rejected: 'VIGIL_ERR_WEBHOOK_REJECTED' },
        isPriority: (item) => item.resolved,
        key: undefined,
        encode: (items) => `{"version":${WEBHOOK_BODY_VERSION},"alerts":[${items.map((i) => i.json).join(',')}]}`,
      },
      options.logger ?? componentLogger('webhook-output'),
    );
  }

  /** Queues the event for the next POST; never throws, never waits. */
  send(event: AlertEvent): void {
    let json: string;
    try {
      json = JSON.stringify(event);
    } catch (err) {
      this.log.error({ err, fingerprint: event.fingerprint }, 'alert event could not be encoded as JSON');
      this.stats.onDropped(1, 'invalid');
      return;
    }
    this.sender.enqueue({ json, resolved: event.status === 'resolved' });
  }
}
