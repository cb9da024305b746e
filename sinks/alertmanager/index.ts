export { AlertmanagerOutput, ALERTMANAGER_DEFAULTS, RESEND_ENDS_AT_FACTOR } from './output.js';
export type { AlertmanagerOutputOptions } from './output.js';
export { alertmanagerAnnotations, alertmanagerLabels, sanitizeLabelName, toAlertmanagerAlert, RESERVED_LABELS } from './mapping.js';
export type { AlertmanagerAlert } from './mapping.js';
export { OUTPUT_DEFAULTS, OutputSendError } from '../alerts/output.js';
export type { DropReason, OutputErrorCode, OutputStats, RetryOptions } from '../alerts/output.js';
