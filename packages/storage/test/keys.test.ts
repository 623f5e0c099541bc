import { describe, expect, it } from 'vitest';
import { InvalidKeyError, MAX_KEY_BYTES, validateKey, validatePrefix } from '../src/index.js';

describe('validateKey', () => {
  it('accepts the coordinator layout', () => {
    for (const key of [
      'datasets/ab12/shards/0.bin',
      'runs/r1/experts/3/ckpt-1200.safetensors',
      'ensembles/e-9/manifest.json',
      '.hidden/file name with spaces',
      'ünïcödé/ключ',
      'a'.repeat(MAX_KEY_BYTES),
    ]) {
      expect(() => validateKey(key), key).not.toThrow();
    }
  });

  it.each([
    ['', /is empty/],
    ['../x', /"\.\." segment/],
    ['a/../b', /"\.\." segment/],
    ['a/./b', /"\." segment/],
    ['/abs', /starts with "\/"/],
    ['a//b', /empty path segment/],
    ['a/', /empty path segment/],
    ['a\\b', /backslash/],
    ['a\u0000b', /U\+0000/],
    ['tab\there', /U\+0009/],
    ['del\u007f', /U\+007F/],
    ['line\u2028sep', /U\+2028/],
    ['lone\ud800surrogate', /U\+D800/],
    ['a'.repeat(MAX_KEY_BYTES + 1), /longer than 1024 bytes/],
    ['é'.repeat(513), /longer than 1024 bytes/],
  ])('rejects %j', (key, problem) => {
    expect(() => validateKey(key)).toThrow(InvalidKeyError);
    expect(() => validateKey(key)).toThrow(problem);
  });

  it('names the key in the message', () => {
    expect(() => validateKey('runs/../../etc/passwd')).toThrow('"runs/../../etc/passwd"');
  });
});

describe('validatePrefix', () => {
  it('accepts empty, trailing-slash and partial-segment prefixes', () => {
    for (const prefix of ['', 'datasets/', 'datasets/ab', 'runs/r1/experts/3/']) {
      expect(() => validatePrefix(prefix), prefix).not.toThrow();
    }
  });

  it.each(['../', '/', '/runs', 'a//', 'a//b', 'a\\', 'x/../y'])('rejects %j', (prefix) => {
    expect(() => validatePrefix(prefix)).toThrow(InvalidKeyError);
  });
});
