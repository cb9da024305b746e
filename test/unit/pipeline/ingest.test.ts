import type { KafkaMessage } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { MessageOrigins } from '../../../pipeline/ingest.js';

const message = (offset: string, key: string | null, headers: KafkaMessage['headers'], value = 'v'): KafkaMessage =>
  ({ offset, key: key === null ? null : Buffer.from(key), value: Buffer.from(value), headers, timestamp: '0', attributes: 0, size: 0 }) as KafkaMessage;

describe('MessageOrigins (what dead letters need once the values went to a worker)', () => {
  it('gives back each message\'s key, non-empty headers and offset, with the value it is handed, and keeps no fetch buffer alive', () => {
    const fetched = Buffer.from('k-onek-two');
    const messages = [
      { ...message('10', null, {}), key: fetched.subarray(0, 5) },
      message('11', null, { trace: Buffer.from('abc') }),
      { ...message('13', null, undefined), key: fetched.subarray(5) },
      message('14', '', {}),
    ];
    const o = new MessageOrigins(messages);
    // The fetch buffer changes: copies are unaffected.
    fetched.fill(0);
    const value = new TextEncoder().encode('whole');
    expect(o.message(0, value)).toEqual({ key: Buffer.from('k-one'), value: Buffer.from('whole'), headers: {}, offset: '10' });
    expect(o.message(1, undefined)).toEqual({ key: null, value: null, headers: { trace: Buffer.from('abc') }, offset: '11' });
    expect(o.message(2, undefined).key).toEqual(Buffer.from('k-two'));
    expect(o.message(3, undefined).key).toEqual(Buffer.alloc(0));
  });
});
