/**
 * Byte-range checks shared by the stores, so a range that one store rejects is rejected by all.
 */
import { InvalidRangeError } from './errors.js';
import type { ByteRange } from './object-store.js';

/** Throw {@link InvalidRangeError} unless `start`/`end` are non-negative integers, `end >= start`. */
export function validateRange(key: string, range: ByteRange): void {
  const { start, end } = range;
  const valid =
    Number.isSafeInteger(start) &&
    start >= 0 &&
    (end === undefined || (Number.isSafeInteger(end) && end >= start));
  if (!valid) throw new InvalidRangeError(key, range);
}

/**
 * The inclusive range actually served from an object of `size` bytes: `end` is clamped to the
 * last byte; a range starting at or past the end throws {@link InvalidRangeError} (as S3 does).
 */
export function resolveRange(
  key: string,
  range: ByteRange,
  size: number,
): { start: number; end: number } {
  validateRange(key, range);
  if (range.start >= size) throw new InvalidRangeError(key, range, size);
  return { start: range.start, end: Math.min(range.end ?? size - 1, size - 1) };
}
