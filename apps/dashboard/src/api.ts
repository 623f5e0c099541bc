/**
 * REST calls to the coordinator that served this page (same origin), with the keys the user
 * entered. Keys live in sessionStorage: this tab only, gone when it closes.
 */

const STORAGE = { view: 'archipelago.viewKey', admin: 'archipelago.adminKey' } as const;

export const keys = {
  get view(): string {
    return sessionStorage.getItem(STORAGE.view) ?? '';
  },
  get admin(): string {
    return sessionStorage.getItem(STORAGE.admin) ?? '';
  },
  set(view: string, admin: string): void {
    for (const [name, value] of [
      [STORAGE.view, view],
      [STORAGE.admin, admin],
    ] as const) {
      if (value) sessionStorage.setItem(name, value);
      else sessionStorage.removeItem(name);
    }
    window.dispatchEvent(new CustomEvent('keys-changed'));
  },
};

/** The coordinator answered with an error (`{ error: { code, message } }`). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** The error's `details`, when it has some (a pending score's progress, say). */
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** Reads (and the view-key check) refused: the organiser turned on a view key. */
export const AUTH_REQUIRED = 'auth-required';

export interface RequestOptions {
  method?: string;
  body?: unknown;
  /** An admin action: send the admin key. */
  admin?: boolean;
}

/** Fetch JSON from the coordinator; throws {@link HttpError} on an error status. */
export async function api<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const key = options.admin ? keys.admin : keys.view || keys.admin;
  const headers: Record<string, string> = { accept: 'application/json' };
  if (key) headers.authorization = `Bearer ${key}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, {
    method: options.method ?? 'GET',
    headers,
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
  });
  const text = await res.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON (a proxy's error page): reported below with the status.
  }
  if (!res.ok) {
    const err = (
      json as {
        error?: { code?: string; message?: string; details?: Record<string, unknown> };
      } | null
    )?.error;
    const code = err?.code ?? `http_${res.status}`;
    if (!options.admin && (res.status === 401 || res.status === 403))
      window.dispatchEvent(new CustomEvent(AUTH_REQUIRED, { detail: err?.message ?? code }));
    throw new HttpError(
      res.status,
      code,
      err?.message ?? `${res.status} ${res.statusText}`,
      err?.details,
    );
  }
  return json as T;
}

/**
 * A URL the browser fetches by itself (live stream, images, downloads), which cannot carry a
 * header: the view key goes in `?key=` when one is set.
 */
export function withKey(path: string): string {
  const key = keys.view;
  if (!key) return path;
  return `${path}${path.includes('?') ? '&' : '?'}key=${encodeURIComponent(key)}`;
}
