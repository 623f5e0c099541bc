import { describe, expect, it } from 'vitest';
import { LocalUrlSigner } from '../src/index.js';

const BASE = 'http://127.0.0.1:8080/store';
const NOW = Date.UTC(2025, 0, 1);
const signer = new LocalUrlSigner('signer-secret-of-16-bytes+');

function parts(url: string) {
  const u = new URL(url);
  const key = u.pathname.slice('/store/'.length).split('/').map(decodeURIComponent).join('/');
  return { key, query: u.searchParams };
}

describe('LocalUrlSigner', () => {
  it('round-trips a PUT grant with its constraints, the key path-encoded', () => {
    const signed = signer.sign(
      BASE,
      'PUT',
      'runs/a b/ckpt',
      60,
      { bytes: 12, maxBytes: 100, sha256: 'ab'.repeat(32), contentType: 'application/x' },
      NOW,
    );
    expect(signed.url.startsWith(`${BASE}/runs/a%20b/ckpt?`)).toBe(true);
    expect(signed.expiresAt.getTime()).toBe(NOW + 60_000);
    const { key, query } = parts(signed.url);
    expect(signer.verify('PUT', key, query, NOW)).toEqual({
      ok: true,
      grant: {
        method: 'PUT',
        key: 'runs/a b/ckpt',
        expiresAt: signed.expiresAt,
        bytes: 12,
        maxBytes: 100,
        sha256: 'ab'.repeat(32),
        contentType: 'application/x',
      },
    });
  });

  it('refuses a forged signature, another key, a changed constraint or another secret', () => {
    const { key, query } = parts(signer.sign(BASE, 'PUT', 'k', 60, { maxBytes: 10 }, NOW).url);
    const forged = new URLSearchParams(query);
    forged.set('sig', Buffer.alloc(32, 7).toString('base64url'));
    expect(signer.verify('PUT', key, forged, NOW)).toMatchObject({
      ok: false,
      code: 'bad_signature',
    });
    expect(signer.verify('PUT', 'other', query, NOW)).toMatchObject({ code: 'bad_signature' });
    const bigger = new URLSearchParams(query);
    bigger.set('maxBytes', '1000000');
    expect(signer.verify('PUT', key, bigger, NOW)).toMatchObject({ code: 'bad_signature' });
    const stranger = new LocalUrlSigner('another-secret-16-bytes!');
    expect(stranger.verify('PUT', key, query, NOW)).toMatchObject({ code: 'bad_signature' });
  });

  it('refuses an expired URL and one used with another method; HEAD counts as GET', () => {
    const signed = signer.sign(BASE, 'GET', 'k', 5, {}, NOW);
    const { key, query } = parts(signed.url);
    const expiry = signed.expiresAt.getTime();
    expect(signer.verify('HEAD', key, query, expiry).ok).toBe(true);
    expect(signer.verify('GET', key, query, expiry + 1)).toMatchObject({ code: 'expired' });
    expect(signer.verify('PUT', key, query, NOW)).toMatchObject({ code: 'wrong_method' });
  });

  it('calls a URL without method, expires or sig malformed, and needs a 16-byte secret', () => {
    expect(signer.verify('GET', 'k', new URLSearchParams({ method: 'GET' }), NOW)).toMatchObject({
      ok: false,
      code: 'malformed_url',
    });
    expect(() => new LocalUrlSigner('short')).toThrow(/16 bytes/);
  });
});
