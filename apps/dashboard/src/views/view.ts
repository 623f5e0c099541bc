import type { LiveMessage } from '@archipelago/protocol';

/** A page of the dashboard, mounted into `<main>` for one route. */
export interface View {
  /** Fetch everything shown (on mount, and again whenever the live stream says hello). */
  refresh(): Promise<void>;
  onLive(message: LiveMessage): void;
  destroy(): void;
}
