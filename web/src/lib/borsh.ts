// A borsh writer for the canonical encodings of crates/types and
// crates/ledger: little-endian integers, u32-length-prefixed strings and
// vectors, one-byte enum tags and option flags, fixed arrays as raw bytes.

export class BorshWriter {
  private chunks: number[] = [];

  u8(n: number): this {
    if (!Number.isInteger(n) || n < 0 || n > 0xff) throw new Error(`${n} does not fit a u8`);
    this.chunks.push(n);
    return this;
  }

  private uint(n: bigint | number | string, bytes: number, name: string): this {
    // A JSON number past 2^53 has already lost digits: refuse it rather
    // than sign a different value (large values travel as strings).
    if (typeof n === 'number' && !Number.isSafeInteger(n)) {
      throw new Error(`${n} is not an exact integer in JavaScript: pass it as a decimal string`);
    }
    let v = BigInt(n);
    if (v < 0n || v >= 1n << BigInt(8 * bytes)) throw new Error(`${n} does not fit a ${name}`);
    for (let i = 0; i < bytes; i++) {
      this.chunks.push(Number(v & 0xffn));
      v >>= 8n;
    }
    return this;
  }

  u16(n: number): this {
    return this.uint(n, 2, 'u16');
  }
  u32(n: number): this {
    return this.uint(n, 4, 'u32');
  }
  u64(n: bigint | number | string): this {
    return this.uint(n, 8, 'u64');
  }
  u128(n: bigint | number | string): this {
    return this.uint(BigInt(n), 16, 'u128');
  }
  bool(b: boolean): this {
    return this.u8(b ? 1 : 0);
  }
  /** A fixed-size array: the bytes, no length. */
  fixed(bytes: Uint8Array, len: number, what: string): this {
    if (bytes.length !== len) throw new Error(`${what} must be ${len} bytes, got ${bytes.length}`);
    for (const b of bytes) this.chunks.push(b);
    return this;
  }
  string(s: string): this {
    const b = new TextEncoder().encode(s);
    this.u32(b.length);
    for (const x of b) this.chunks.push(x);
    return this;
  }
  vec<T>(items: readonly T[], each: (w: this, item: T) => void): this {
    this.u32(items.length);
    for (const it of items) each(this, it);
    return this;
  }
  option<T>(v: T | null | undefined, each: (w: this, item: T) => void): this {
    if (v === null || v === undefined) return this.u8(0);
    this.u8(1);
    each(this, v);
    return this;
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.chunks);
  }
}
