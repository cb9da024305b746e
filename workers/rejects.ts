import type { DecodeErrorCode } from './decode/index.js';
import type { IngestReject } from './ingest-task.js';

/** Reasons a dead letter names in full; the rest are counted (`… and N more`). */
export const MAX_REASONS = 5;
/** A dead letter's value: the bad lines or elements, newline-joined, up to this many bytes (sinks/kafka/dlq.ts cuts every letter to it). */
export const MAX_REJECTED_BYTES = 512 * 1024;
/** A reason longer than this is cut (a reason quotes the input, which is the producer's to size). */
const MAX_REASON_CHARS = 512;

const NEWLINE = 0x0a;

/** One message's rejects while they arrive (always in message order, from one task). */
interface Building {
  message: number;
  code: DecodeErrorCode;
  reasons: string[];
  count: number;
  line?: number;
  element?: number;
  /** Whole-message: a reject without bytes, or an item that could not be shown. */
  whole: boolean;
  chunks: Uint8Array[];
  bytes: number;
  items: number;
}

/**
 * Folds the decoders' rejects into one per message (dead letters sized to their cause, not to the
 * number of bad lines): the first reject's code, line or element; the first MAX_REASONS reasons;
 * the number of bad items; and the bad items themselves, newline-joined, up to MAX_REJECTED_BYTES
 * (`items` says how many made it). Line protocol lines and JSON elements joined by newlines are
 * again valid input (line protocol, newline-delimited JSON), so a fixed letter can be replayed.
 * A whole-message reject anywhere in the message makes the letter carry the whole message.
 */
export class RejectCollector {
  private readonly done: IngestReject[] = [];
  private current: Building | null = null;

  add(message: number, code: DecodeErrorCode, reason: string, detail: { bytes?: Uint8Array; line?: number; element?: number }): void {
    let b = this.current;
    if (b === null || b.message !== message) {
      this.flush();
      b = { message, code, reasons: [], count: 0, whole: false, chunks: [], bytes: 0, items: 0 };
      if (detail.line !== undefined) b.line = detail.line;
      if (detail.element !== undefined) b.element = detail.element;
      this.current = b;
    }
    b.count++;
    if (b.reasons.length < MAX_REASONS) b.reasons.push(reason.length > MAX_REASON_CHARS ? `${reason.slice(0, MAX_REASON_CHARS)}…` : reason);
    if (detail.bytes === undefined) {
      b.whole = true;
      return;
    }
    const cost = detail.bytes.length + (b.items > 0 ? 1 : 0);
    if (b.bytes + cost > MAX_REJECTED_BYTES) return;
    b.chunks.push(detail.bytes);
    b.bytes += cost;
    b.items++;
  }

  finish(): IngestReject[] {
    this.flush();
    return this.done;
  }

  private flush(): void {
    const b = this.current;
    if (b === null) return;
    this.current = null;
    const more = b.count - b.reasons.length;
    const reject: IngestReject = {
      message: b.message,
      code: b.code,
      reason: more > 0 ? `${b.reasons.join('; ')}; … and ${String(more)} more` : b.reasons.join('; '),
      count: b.count,
    };
    if (b.line !== undefined) reject.line = b.line;
    if (b.element !== undefined) reject.element = b.element;
    if (!b.whole) {
      reject.bytes = join(b.chunks, b.bytes);
      reject.items = b.items;
    }
    this.done.push(reject);
  }
}

function join(chunks: readonly Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0] as Uint8Array;
  const out = new Uint8Array(total);
  let pos = 0;
  chunks.forEach((c, i) => {
    if (i > 0) out[pos++] = NEWLINE;
    out.set(c, pos);
    pos += c.length;
  });
  return out;
}
