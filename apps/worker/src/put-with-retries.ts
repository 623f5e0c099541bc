/**
 * One PUT to a presigned URL that survives store faults: a dropped or reset connection, a
 * timeout, a 5xx or a 429 is retried on the same URL after an exponential, jittered backoff (at
 * least the store's Retry-After, when it sends one), up to `maxAttempts`. Answers a retry cannot
 * fix come back at once for the caller to act on:
 *
 * - `closed` (403): the URL expired, or the coordinator closed the upload (`upload_closed`); a
 *   fresh URL (a new `checkpoint.begin`) may succeed;
 * - `exists` (412 on a retry): the create-only key already holds an object, which an earlier
 *   attempt whose answer was lost wrote; the commit checks its size and sha256;
 * - `refused`: any other 4xx (and a 412 on the first attempt: not ours).
 *
 * Only `stored` and `exists` mean the bytes may be in the store; anything else must not be
 * committed. Every PUT of the worker (a checkpoint, its optimiser state) goes through here.
 */
import { abortableSleep } from './abortable-sleep.js';
import { Backoff } from './backoff.js';

export type PutOutcome =
  | { outcome: 'stored'; attempts: number; status: number }
  | { outcome: 'exists'; attempts: number; status: number }
  | { outcome: 'closed'; attempts: number; status: number; message: string }
  | { outcome: 'refused'; attempts: number; status: number; message: string }
  /** Transient failures until `maxAttempts` (or `signal` aborted): `message` is the last one. */
  | { outcome: 'failed'; attempts: number; status: number | null; message: string };

export interface PutRetryOptions {
  /** Attempts on this URL, the first included. Default 5. */
  maxAttempts?: number;
  /** Delays between attempts. Default 500 ms doubling to 15 s, full jitter. */
  backoff?: Backoff;
  /** Time limit of one attempt. Default 60 s, or 2 s per MiB of body when longer. */
  timeoutMs?: number;
  /** Stops the retries (and the attempt under way). */
  signal?: AbortSignal;
  fetch?: typeof fetch;
  /** Before waiting for the next attempt. */
  onRetry?: (info: { attempt: number; delayMs: number; reason: string }) => void;
}

const MB = 1024 * 1024;

/** Seconds of a Retry-After header (delta-seconds form only), as ms; null otherwise. */
function retryAfterMs(res: Response): number | null {
  const value = res.headers.get('retry-after');
  return value !== null && /^\d+$/.test(value.trim()) ? Number(value) * 1000 : null;
}

/** The error's own message, with the socket-level cause fetch wraps (ECONNRESET, ...). */
function describe(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  const cause = e.cause?.code ?? e.cause?.message;
  return cause ? `${e.message} (${cause})` : e.message;
}

export async function putWithRetries(
  url: string,
  headers: Record<string, string>,
  body: Uint8Array,
  options: PutRetryOptions = {},
): Promise<PutOutcome> {
  const maxAttempts = Math.max(1, options.maxAttempts ?? 5);
  const backoff = options.backoff ?? new Backoff(500, 15_000);
  const timeoutMs = options.timeoutMs ?? Math.max(60_000, (body.byteLength / MB) * 2_000);
  const signal = options.signal ?? new AbortController().signal;
  const doFetch = options.fetch ?? fetch;
  let last: { status: number | null; message: string } = { status: null, message: 'not tried' };
  for (let attempt = 1; ; attempt++) {
    let minDelay = 0;
    try {
      const res = await doFetch(url, {
        method: 'PUT',
        headers,
        body,
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
      });
      const text = res.ok ? '' : (await res.text().catch(() => '')).slice(0, 300);
      if (res.ok) {
        await res.body?.cancel().catch(() => {});
        return { outcome: 'stored', attempts: attempt, status: res.status };
      }
      const message = `HTTP ${res.status} ${text}`.trim();
      if (res.status === 412 && attempt > 1)
        return { outcome: 'exists', attempts: attempt, status: res.status };
      if (res.status === 403) return { outcome: 'closed', attempts: attempt, status: 403, message };
      if (res.status < 500 && res.status !== 429)
        return { outcome: 'refused', attempts: attempt, status: res.status, message };
      last = { status: res.status, message };
      minDelay = retryAfterMs(res) ?? 0;
    } catch (err) {
      last = { status: null, message: describe(err) };
    }
    if (attempt >= maxAttempts || signal.aborted)
      return { outcome: 'failed', attempts: attempt, ...last };
    const delayMs = Math.min(backoff.capMs, Math.max(minDelay, backoff.next()));
    options.onRetry?.({ attempt, delayMs, reason: last.message });
    await abortableSleep(delayMs, signal);
  }
}
