/**
 * The live stream (`/api/v1/live`, server-sent events) with a status the header shows. The
 * browser's EventSource retries dropped streams by itself; when it gives up (an HTTP error, e.g.
 * a view key is now required) this reconnects with exponential backoff, and asks for a key when
 * that is the reason.
 */
import type { LiveMessage } from '@archipelago/protocol';
import { AUTH_REQUIRED, withKey } from './api.js';

export type LiveState = 'connecting' | 'live' | 'reconnecting' | 'locked';

export interface LiveOptions {
  onMessage(message: LiveMessage): void;
  onState(state: LiveState): void;
}

const MAX_BACKOFF_MS = 30_000;

export class Live {
  private source: EventSource | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private failures = 0;
  private state: LiveState = 'connecting';

  constructor(private readonly options: LiveOptions) {}

  start(): void {
    this.stop();
    this.setState(this.failures === 0 ? 'connecting' : 'reconnecting');
    const source = new EventSource(withKey('/api/v1/live'));
    this.source = source;
    source.onopen = () => {
      this.failures = 0;
      this.setState('live');
    };
    source.onmessage = (e: MessageEvent<string>) => {
      let message: LiveMessage;
      try {
        message = JSON.parse(e.data) as LiveMessage;
      } catch {
        return;
      }
      this.options.onMessage(message);
    };
    source.onerror = () => {
      if (source !== this.source) return;
      this.setState('reconnecting');
      // CONNECTING: the browser retries on its own. CLOSED: it gave up; find out why.
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        this.source = null;
        void this.diagnose();
      }
    };
  }

  stop(): void {
    clearTimeout(this.retryTimer);
    this.source?.close();
    this.source = null;
  }

  private async diagnose(): Promise<void> {
    this.failures++;
    try {
      const res = await fetch(withKey('/api/v1/events?limit=1'));
      if (res.status === 401 || res.status === 403) {
        this.setState('locked');
        window.dispatchEvent(new CustomEvent(AUTH_REQUIRED, { detail: 'view key required' }));
        return;
      }
    } catch {
      // The coordinator is unreachable: keep trying.
    }
    const backoff = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** Math.min(this.failures - 1, 5));
    this.retryTimer = setTimeout(() => this.start(), backoff * (0.75 + Math.random() / 2));
  }

  private setState(state: LiveState): void {
    if (state === this.state) return;
    this.state = state;
    this.options.onState(state);
  }
}
