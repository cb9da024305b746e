import { describe, expect, it } from 'vitest';
import { kafkaClusterId } from '../../../infra/services.js';

describe('kafkaClusterId', () => {
  it('never starts with "-" (StorageTool took such an id for an option and a fresh machine failed to format Kafka)', () => {
    // One id in 64 would start with '-' if drawn once: 5,000 draws all but never miss one.
    const ids = Array.from({ length: 5000 }, () => kafkaClusterId());
    expect(ids.filter((id) => id.startsWith('-'))).toEqual([]);
    for (const id of ids.slice(0, 100)) expect(id).toMatch(/^[A-Za-z0-9_][A-Za-z0-9_-]{21}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
