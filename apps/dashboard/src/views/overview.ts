/** `#/`: every run with its state, progress across experts, ETA and start. */
import type {
  EventList,
  ExpertStatus,
  LiveMessage,
  Run,
  RunEvent,
  RunList,
} from '@archipelago/protocol';
import { api } from '../api.js';
import { debounce, fill, h } from '../dom.js';
import { formatDuration, formatPercent, runEta, runProgress, statusCounts } from '../format.js';
import {
  badge,
  describeEvent,
  errorBox,
  eventCategory,
  progressBar,
  section,
  since,
} from '../ui.js';
import type { View } from './view.js';

const ACTIVITY = 15;

export function overview(main: HTMLElement): View {
  let runs: Run[] = [];
  let activity: RunEvent[] = [];
  const body = h('tbody');
  const table = h(
    'table',
    { class: 'table', 'aria-label': 'Runs' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        ['Run', 'Status', 'Experts', 'Progress', 'ETA', 'Started'].map((t) =>
          h('th', { scope: 'col' }, t),
        ),
      ),
    ),
    body,
  );
  const empty = h(
    'p',
    { class: 'muted', hidden: true },
    'No runs yet. Create one with ',
    h('code', null, 'coordinator run create'),
    ' or POST /api/v1/runs.',
  );
  const status = h('div');
  const log = h('ol', { class: 'events compact', 'aria-label': 'Recent activity' });
  fill(
    main,
    h('h1', null, 'Runs'),
    status,
    h('div', { class: 'table-wrap' }, table),
    empty,
    section('Recent activity', log),
  );

  const renderRuns = () => {
    empty.hidden = runs.length > 0;
    fill(
      body,
      runs.map((run) => {
        const counts = statusCounts(run);
        const done = counts.done ?? 0;
        const progress = runProgress(run);
        const eta = runEta(run);
        return h(
          'tr',
          { dataset: { run: run.id } },
          h('th', { scope: 'row' }, h('a', { href: `#/runs/${run.id}` }, run.name)),
          h('td', null, badge(run.status)),
          h(
            'td',
            null,
            `${done}/${run.experts.length} done`,
            h(
              'span',
              { class: 'muted small block' },
              Object.entries(counts)
                .filter(([s]) => s !== 'done')
                .map(([s, n]) => `${n} ${s}`)
                .join(', '),
            ),
          ),
          h(
            'td',
            { class: 'progress-cell' },
            progressBar(progress, `${run.name}: ${formatPercent(progress)}`),
            h('span', { class: 'small' }, formatPercent(progress)),
          ),
          h(
            'td',
            null,
            eta === null
              ? h('span', { class: 'muted small' }, 'waiting for workers')
              : eta === 0
                ? '—'
                : formatDuration(eta),
          ),
          h('td', null, since(run.createdAt)),
        );
      }),
    );
  };
  const renderActivity = () => {
    fill(
      log,
      activity.length === 0 ? h('li', { class: 'muted' }, 'Nothing yet.') : null,
      activity.map((e) =>
        h(
          'li',
          { class: `event cat-${eventCategory(e.type)}` },
          since(e.at),
          ' ',
          h('span', { class: 'event-type' }, e.type),
          ' ',
          e.runId
            ? h(
                'a',
                { href: `#/runs/${e.runId}` },
                runs.find((r) => r.id === e.runId)?.name ?? e.runId,
              )
            : null,
          ' ',
          h('span', { class: 'muted' }, describeEvent(e)),
        ),
      ),
    );
  };

  const refresh = async () => {
    try {
      const [list, events] = await Promise.all([
        api<RunList>('/api/v1/runs'),
        api<EventList>(`/api/v1/events?limit=${ACTIVITY}`),
      ]);
      runs = list.runs;
      activity = events.events;
      fill(status);
      renderRuns();
      renderActivity();
    } catch (err) {
      fill(status, errorBox(err));
    }
  };
  const refetch = debounce(() => void refresh(), 500);
  const rerender = debounce(renderRuns, 200);

  return {
    refresh,
    onLive(m: LiveMessage) {
      if (m.type === 'progress') {
        const expert = runs.find((r) => r.id === m.runId)?.experts.find((e) => e.id === m.expertId);
        if (!expert) {
          refetch();
          return;
        }
        const statusChanged = expert.status !== m.status;
        Object.assign(expert, {
          status: m.status as ExpertStatus,
          step: m.step,
          loss: m.loss,
          imagesPerSec: m.imagesPerSec,
        });
        if (statusChanged) refetch();
        else rerender();
      } else if (m.type === 'event') {
        if (activity.some((e) => e.id === m.event.id)) return;
        activity = [m.event, ...activity].slice(0, ACTIVITY);
        renderActivity();
        if (m.event.type.startsWith('run.') || m.event.type.startsWith('ensemble.')) refetch();
      }
    },
    destroy() {
      refetch.cancel();
      rerender.cancel();
    },
  };
}
