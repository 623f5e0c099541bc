/**
 * What the worker tells its operator, on stderr. On a TTY: log lines above one progress line that
 * is redrawn in place (`expert 2 (fm) step 120/400 loss 0.412 83 img/s ETA 3m12s`). Elsewhere
 * (service managers, pipes, CI): timestamped plain lines, with a progress line every ~10 % of an
 * expert's steps.
 */

export interface ProgressState {
  cluster: number;
  objective: string;
  step: number;
  target: number;
  loss: number | null;
  imagesPerSec: number;
  /** Estimated seconds to the target, or null while unknown. */
  etaSeconds: number | null;
  /** Shown after the numbers, e.g. `offline` or `uploading`. */
  note?: string;
}

/** `3m12s`, `1h04m`, `42s`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(s / 3600);
  return `${h}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function formatProgress(p: ProgressState): string {
  const parts = [
    `expert ${p.cluster} (${p.objective})`,
    `step ${p.step}/${p.target}`,
    `loss ${p.loss === null ? '-' : p.loss.toFixed(3)}`,
    `${p.imagesPerSec >= 10 ? Math.round(p.imagesPerSec) : p.imagesPerSec.toFixed(1)} img/s`,
    `ETA ${p.etaSeconds === null ? '-' : formatDuration(p.etaSeconds)}`,
  ];
  if (p.note) parts.push(`[${p.note}]`);
  return parts.join(' ');
}

export class Reporter {
  private line: string | null = null;
  private lastDecile = new Map<string, number>();

  constructor(
    private readonly stream: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr,
    readonly tty: boolean = Boolean(process.stderr.isTTY),
  ) {}

  info(message: string): void {
    this.write(message);
  }

  warn(message: string): void {
    this.write(`warning: ${message}`);
  }

  error(message: string): void {
    this.write(`error: ${message}`);
  }

  /** Redraw the progress line (TTY) or print one every ~10 % of `target` (plain). */
  progress(p: ProgressState, key: string): void {
    const text = formatProgress(p);
    if (this.tty) {
      this.line = text;
      this.stream.write(`\r\x1b[2K${text}`);
      return;
    }
    const decile = Math.floor((10 * p.step) / Math.max(1, p.target));
    const last = this.lastDecile.get(key);
    if (last === undefined || decile > last) {
      this.lastDecile.set(key, decile);
      this.write(text);
    }
  }

  /** Forget the progress line (the expert is finished or dropped). */
  endProgress(): void {
    if (this.tty && this.line !== null) this.stream.write('\r\x1b[2K');
    this.line = null;
  }

  private write(message: string): void {
    if (this.tty) {
      const redraw = this.line === null ? '' : this.line;
      const time = new Date().toTimeString().slice(0, 8);
      this.stream.write(`\r\x1b[2K${time} ${message}\n${redraw}`);
      return;
    }
    this.stream.write(`${new Date().toISOString()} ${message}\n`);
  }
}
