/** Pure formatting and estimates shared by the views (unit-tested). */
import type { Expert, Run, RunStatus } from '@archipelago/protocol';

export const TERMINAL_RUN_STATUSES: readonly RunStatus[] = ['published', 'failed', 'cancelled'];

/** `3 s`, `4 min 05 s`, `2 h 07 min`, `3 d 4 h`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${String(m % 60).padStart(2, '0')} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** `just now`, `12 s ago`, `5 min ago`, `3 h ago`, `2 d ago` (or `in …` for the future). */
export function relativeTime(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '—';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '—';
  const diff = (now - t) / 1000;
  const abs = Math.abs(diff);
  if (abs < 2) return 'just now';
  const text =
    abs < 60
      ? `${Math.round(abs)} s`
      : abs < 3600
        ? `${Math.round(abs / 60)} min`
        : abs < 86_400 * 2
          ? `${Math.round(abs / 3600)} h`
          : `${Math.round(abs / 86_400)} d`;
  return diff >= 0 ? `${text} ago` : `in ${text}`;
}

/** A short absolute time for titles and logs: `2026-11-26 11:21:10`. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** Three significant digits, no exponent for ordinary values. */
export function formatNumber(x: number | null | undefined, digits = 3): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—';
  if (x === 0) return '0';
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString('en');
  if (Math.abs(x) < 1e-3) return x.toExponential(1);
  return Number(x.toPrecision(digits)).toString();
}

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

export function formatPercent(fraction: number): string {
  if (!Number.isFinite(fraction)) return '—';
  return `${(fraction * 100).toFixed(fraction >= 0.995 || fraction === 0 ? 0 : 1)} %`;
}

const finished = (e: Expert) => e.status === 'done' || e.status === 'failed';

/**
 * Seconds until an expert reaches its target at its current rate (steps per second =
 * images per second / batch size): 0 when done, null while nobody trains it.
 */
export function expertEta(expert: Expert, batchSize: number): number | null {
  if (finished(expert) || expert.step >= expert.targetSteps) return 0;
  if (expert.status !== 'training' || !expert.imagesPerSec || expert.imagesPerSec <= 0) return null;
  return ((expert.targetSteps - expert.step) * batchSize) / expert.imagesPerSec;
}

/** Steps taken over steps to take, across every expert of the run. */
export function runProgress(run: Run): number {
  let done = 0;
  let total = 0;
  for (const e of run.experts) {
    total += e.targetSteps;
    done += finished(e) ? e.targetSteps : Math.min(e.step, e.targetSteps);
  }
  return total > 0 ? done / total : 0;
}

/**
 * Seconds until the run's last expert is done, assuming the experts in training keep their pace
 * and run in parallel; null while some unfinished expert has no worker.
 */
export function runEta(run: Run): number | null {
  if (TERMINAL_RUN_STATUSES.includes(run.status)) return 0;
  let eta = 0;
  for (const e of run.experts) {
    const x = expertEta(e, run.config.batchSize);
    if (x === null) return null;
    eta = Math.max(eta, x);
  }
  return eta;
}

/** Experts by status, e.g. `{ done: 2, training: 1, pending: 5 }`. */
export function statusCounts(run: Run): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const e of run.experts) counts[e.status] = (counts[e.status] ?? 0) + 1;
  return counts;
}

/** Bin centres of a histogram's edges. */
export function binCentres(edges: number[]): number[] {
  return edges.slice(0, -1).map((e, i) => (e + edges[i + 1]!) / 2);
}

/**
 * The acceptance test's measurements (docs/method.md §12): x0 error as a multiple of the shard's
 * linear reference at mid and high noise, and how much lower its normalised error is on its own
 * shard than on the next.
 */
export function acceptanceText(a: NonNullable<Expert['acceptance']>): string {
  const x = (r: number) => `${r.toFixed(2)}×`;
  return `x0 error ${x(a.midRatio)} the linear reference at mid noise, ${x(a.highRatio)} at high noise${a.specificity === null ? '' : `; specificity ${a.specificity.toFixed(2)}`}`;
}
