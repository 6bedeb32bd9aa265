import { describe, expect, it } from 'vitest';
import { PIECE_BYTES, ReadBufferPool } from '../../../src/internal/read-buffer-pool.js';

describe('ReadBufferPool', () => {
  it('serves a request in pieces of at most PIECE_BYTES, and small requests from buffers of their own', () => {
    const pool = new ReadBufferPool(1 << 20);
    const lease = pool.lease();
    expect(lease.take(3 * PIECE_BYTES).length).toBe(PIECE_BYTES);
    expect(lease.take(PIECE_BYTES - 1).length).toBe(PIECE_BYTES - 1);
    const small = lease.take(100);
    expect(small.length).toBe(100);
    lease.release();
    // Two pieces came back (the small buffer was never the pool's).
    expect(pool.freeBytes).toBe(2 * PIECE_BYTES);
  });

  it('hands a released piece out again, and never one that is still leased', () => {
    const pool = new ReadBufferPool(1 << 20);
    const a = pool.lease();
    const b = pool.lease();
    const pa = a.take(PIECE_BYTES);
    const pb = b.take(PIECE_BYTES);
    expect(pa.buffer === pb.buffer && pa.byteOffset === pb.byteOffset).toBe(false);
    a.release();
    const c = pool.lease();
    const pc = c.take(PIECE_BYTES);
    expect(pc.buffer).toBe(pa.buffer);
    expect(pc.byteOffset).toBe(pa.byteOffset);
    // Releasing twice gives nothing back twice.
    a.release();
    expect(pool.freeBytes).toBe(0);
  });

  it('cuts seeded buffers into pieces and keeps no more free bytes than its bound', () => {
    const pool = new ReadBufferPool(3 * PIECE_BYTES);
    const big = Buffer.alloc(4 * PIECE_BYTES + 10);
    pool.seed([big]);
    expect(pool.freeBytes).toBe(3 * PIECE_BYTES);
    const lease = pool.lease();
    const p = lease.take(PIECE_BYTES);
    expect(p.buffer).toBe(big.buffer);
  });
});
