/** Small building blocks shared by the views. */
import type { RunEvent } from '@archipelago/protocol';
import { type Child, h } from './dom.js';
import { formatNumber, formatTime, relativeTime } from './format.js';

export function badge(status: string): HTMLElement {
  return h('span', { class: `badge status-${status}` }, status);
}

export function progressBar(fraction: number, label: string): HTMLElement {
  const pct = Math.max(0, Math.min(1, fraction)) * 100;
  return h(
    'div',
    {
      class: 'progress',
      role: 'progressbar',
      'aria-valuemin': 0,
      'aria-valuemax': 100,
      'aria-valuenow': Math.round(pct),
      'aria-label': label,
    },
    h('div', { class: 'progress-fill', style: `width: ${pct.toFixed(1)}%` }),
  );
}

/** A relative time ("12 s ago") that the page clock keeps current; the exact time on hover. */
export function since(iso: string | null | undefined): HTMLElement {
  return h(
    'time',
    { datetime: iso ?? undefined, title: formatTime(iso), dataset: { since: iso ?? '' } },
    relativeTime(iso),
  );
}

/** Refresh every relative time on the page. */
export function tickRelativeTimes(root: ParentNode = document): void {
  for (const el of root.querySelectorAll<HTMLElement>('[data-since]'))
    el.textContent = relativeTime(el.dataset.since || null);
}

export function errorBox(err: unknown): HTMLElement {
  const message = err instanceof Error ? err.message : String(err);
  return h('p', { class: 'error', role: 'alert' }, message);
}

export function section(title: string, ...children: Child[]): HTMLElement {
  return h('section', { class: 'panel' }, h('h2', null, title), ...children);
}

/** What kind of event this is, for colour and filtering. */
export function eventCategory(type: string): string {
  if (type === 'lease.expired' || type === 'lease.revoked' || type === 'lease.released')
    return 'expiry';
  if (type.startsWith('lease.')) return 'lease';
  if (type === 'checkpoint.rejected' || type === 'expert.rejected') return 'rejected';
  if (type.startsWith('checkpoint.')) return 'checkpoint';
  if (type.startsWith('expert.valid')) return 'validation';
  if (type.startsWith('run.') || type.startsWith('router.') || type.startsWith('ensemble.'))
    return 'run';
  return 'other';
}

const num = (v: unknown) => (typeof v === 'number' ? formatNumber(v) : undefined);

/** One line saying what happened, from the event's data. */
export function describeEvent(e: RunEvent): string {
  const d = e.data ?? {};
  const parts: string[] = [];
  const add = (label: string, v: unknown) => {
    if (v !== undefined && v !== null && v !== '') parts.push(`${label} ${v}`);
  };
  switch (e.type) {
    case 'lease.granted':
      add('objective', d.objective);
      add('from step', d.fromStep);
      break;
    case 'lease.expired':
    case 'lease.released':
    case 'lease.revoked':
      if (d.reason) parts.push(String(d.reason));
      add('resumes at step', d.resumeStep);
      break;
    case 'checkpoint.accepted':
      add('step', d.step);
      if (typeof d.bytes === 'number') parts.push(`${(d.bytes / 1e6).toFixed(1)} MB`);
      break;
    case 'checkpoint.rejected':
    case 'expert.rejected':
      add('step', d.step);
      if (d.reason) parts.push(String(d.reason));
      break;
    case 'expert.validated':
      add('step', d.step);
      add('held-out loss', num(d.loss));
      add('baseline', num(d.baseline));
      break;
    case 'router.trained': {
      const acc = Array.isArray(d.accuracy) ? (d.accuracy as number[]) : [d.accuracy as number];
      if (acc.every((a) => typeof a === 'number'))
        add('mean accuracy', num(acc.reduce((a, b) => a + b, 0) / acc.length));
      add('chance', num(d.chance));
      add('steps', d.steps);
      break;
    }
    case 'ensemble.published':
      add('ensemble', d.ensembleId);
      add('routing', d.routing);
      break;
    case 'run.failed':
      if (d.error) parts.push(String(d.error));
      break;
    default:
      for (const [k, v] of Object.entries(d).slice(0, 4))
        if (typeof v !== 'object') add(k, typeof v === 'number' ? formatNumber(v) : v);
  }
  return parts.join(' · ');
}
