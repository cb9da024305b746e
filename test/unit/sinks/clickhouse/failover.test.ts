import { ClickHouseError, type ClickHouseClient } from '@clickhouse/client';
import { describe, expect, it } from 'vitest';
import { failoverClient, type Failover } from '../../../../sinks/clickhouse/failover.js';

/** A stand-in client that records its calls and fails while `down` (no answer) or with `refuse` (a server exception). */
function replica(name: string) {
  const state = { name, calls: [] as string[], down: false, refuse: false, closed: false };
  const call = (what: string) => async () => {
    state.calls.push(what);
    if (state.down) throw Object.assign(new Error(`connect ECONNREFUSED ${name}`), { code: 'ECONNREFUSED' });
    if (state.refuse) throw new ClickHouseError({ message: 'Table is in readonly mode', code: '242', type: 'TABLE_IS_READ_ONLY' });
    return `${what}@${name}`;
  };
  const client = {
    query: call('query'),
    insert: call('insert'),
    command: call('command'),
    exec: call('exec'),
    ping: async () => (state.calls.push('ping'), state.down ? { success: false, error: new Error('down') } : { success: true }),
    close: async () => void (state.closed = true),
  };
  return { state, client: client as unknown as ClickHouseClient };
}

function setup() {
  const r = [replica('a'), replica('b'), replica('c')];
  const switches: Failover[] = [];
  const client = failoverClient(
    r.map((x) => x.client),
    ['http://a', 'http://b', 'http://c'],
    (f) => switches.push(f),
  );
  return { r, client, switches };
}

describe('failoverClient', () => {
  it('sends every call to the first replica while it answers', async () => {
    const { r, client, switches } = setup();
    expect(await client.query({ query: 'SELECT 1' })).toBe('query@a');
    expect(await client.insert({ table: 't', values: [] })).toBe('insert@a');
    expect(r[1]?.state.calls).toEqual([]);
    expect(switches).toEqual([]);
  });

  it('moves to the next replica when one does not answer, still throws, and stays there', async () => {
    const { r, client, switches } = setup();
    (r[0] as ReturnType<typeof replica>).state.down = true;
    await expect(client.exec({ query: 'INSERT' })).rejects.toThrow('ECONNREFUSED a');
    expect(switches.map((s) => [s.from, s.to])).toEqual([['http://a', 'http://b']]);
    expect(await client.exec({ query: 'INSERT' })).toBe('exec@b');
    // a is back: b keeps the calls until it fails ("first alive", sticky).
    (r[0] as ReturnType<typeof replica>).state.down = false;
    expect(await client.command({ query: 'X' })).toBe('command@b');
    (r[1] as ReturnType<typeof replica>).state.down = true;
    await expect(client.command({ query: 'X' })).rejects.toThrow('ECONNREFUSED b');
    expect(await client.command({ query: 'X' })).toBe('command@c');
    (r[2] as ReturnType<typeof replica>).state.down = true;
    await expect(client.command({ query: 'X' })).rejects.toThrow();
    expect(await client.command({ query: 'X' })).toBe('command@a');
    expect(switches.map((s) => s.to)).toEqual(['http://b', 'http://c', 'http://a']);
  });

  it('stays on a replica that answers with an exception: the server is there, the caller decides', async () => {
    const { r, client, switches } = setup();
    (r[0] as ReturnType<typeof replica>).state.refuse = true;
    await expect(client.insert({ table: 't', values: [] })).rejects.toBeInstanceOf(ClickHouseError);
    expect(switches).toEqual([]);
    await expect(client.insert({ table: 't', values: [] })).rejects.toBeInstanceOf(ClickHouseError);
    expect(r[1]?.state.calls).toEqual([]);
  });

  it('moves once for the calls that were in flight on a replica when it went down', async () => {
    const { r, client, switches } = setup();
    (r[0] as ReturnType<typeof replica>).state.down = true;
    const results = await Promise.allSettled([client.query({ query: '1' }), client.query({ query: '2' }), client.query({ query: '3' })]);
    expect(results.every((x) => x.status === 'rejected')).toBe(true);
    expect(switches.map((s) => s.to)).toEqual(['http://b']);
    expect(await client.query({ query: '4' })).toBe('query@b');
  });

  it('moves on a failed ping too, and closes every replica', async () => {
    const { r, client, switches } = setup();
    (r[0] as ReturnType<typeof replica>).state.down = true;
    expect((await client.ping()).success).toBe(false);
    expect(switches.map((s) => s.to)).toEqual(['http://b']);
    expect((await client.ping()).success).toBe(true);
    await client.close();
    expect(r.every((x) => x.state.closed)).toBe(true);
  });
});
