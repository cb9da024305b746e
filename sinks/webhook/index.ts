export { WebhookOutput, WEBHOOK_DEFAULTS, WEBHOOK_BODY_VERSION } from './output.js';
export type { WebhookOutputOptions } from './output.js';
export { OUTPUT_DEFAULTS, OutputSendError } from '../alerts/output.js';
export type { DropReason, OutputErrorCode, OutputStats, RetryOptions } from '../alerts/output.js';
