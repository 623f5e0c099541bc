/**
 * `#/runs/:id`: one card per expert (examples from its shard, status, step, a live loss curve,
 * throughput, ETA, worker, heartbeat, checkpoint), the run's event log newest first, and its
 * ensemble once published.
 */
import type {
  EventList,
  Expert,
  ExpertStatus,
  LiveMessage,
  Run,
  RunEvent,
  RunMetrics,
} from '@archipelago/protocol';
import { api, keys, withKey } from '../api.js';
import { LineChart } from '../charts.js';
import { debounce, fill, h } from '../dom.js';
import {
  acceptanceText,
  expertEta,
  formatDuration,
  formatNumber,
  formatPercent,
  runEta,
  runProgress,
  TERMINAL_RUN_STATUSES,
} from '../format.js';
import {
  badge,
  describeEvent,
  errorBox,
  eventCategory,
  progressBar,
  section,
  since,
} from '../ui.js';
import type { WorkerList } from '../workers-api.js';
import { ensembleSection } from './ensemble.js';
import type { View } from './view.js';

const PAGE = 50;

const FILTERS: [string, string][] = [
  ['', 'All events'],
  ['lease', 'Leases'],
  ['expiry', 'Expiries and revocations'],
  ['checkpoint', 'Checkpoints accepted'],
  ['rejected', 'Rejections'],
  ['validation', 'Validation'],
  ['run', 'Run, router and ensemble'],
];

/** One expert's card; `update` patches it in place. */
class ExpertCard {
  readonly el: HTMLElement;
  readonly chart: LineChart;
  private readonly fields: Record<string, HTMLElement> = {};
  private readonly statusSlot = h('span');
  private readonly bar = h('div');
  private readonly heartbeat = h('span');

  constructor(
    runId: string,
    public expert: Expert,
  ) {
    const field = (name: string) => {
      const el = h('dd', { dataset: { field: name } });
      this.fields[name] = el;
      return el;
    };
    const chartEl = h('div', { dataset: { chart: `loss-${expert.cluster}` } });
    const img = h('img', {
      class: 'examples',
      alt: `Example images from cluster ${expert.cluster}`,
      src: withKey(`/api/v1/runs/${runId}/experts/${expert.cluster}/examples.png`),
      loading: 'lazy',
      onerror: () => {
        img.hidden = true;
      },
    });
    img.hidden = expert.size === null;
    this.el = h(
      'article',
      {
        class: 'card expert',
        dataset: { expert: expert.cluster },
        'aria-labelledby': `expert-${expert.cluster}`,
      },
      h(
        'header',
        { class: 'card-head' },
        h('h3', { id: `expert-${expert.cluster}` }, `Expert ${expert.cluster}`),
        h(
          'span',
          { class: 'muted' },
          expert.schedule ? `${expert.objective} · ${expert.schedule}` : expert.objective,
        ),
        this.statusSlot,
      ),
      img,
      this.bar,
      h(
        'dl',
        { class: 'facts' },
        h('dt', null, 'Step'),
        field('progress'),
        h('dt', null, 'Loss'),
        field('loss'),
        h('dt', null, 'Images/s'),
        field('ips'),
        h('dt', null, 'ETA'),
        field('eta'),
        h('dt', null, 'Shard'),
        field('size'),
        h('dt', null, 'Worker'),
        field('worker'),
        h('dt', null, 'Heartbeat'),
        h('dd', null, this.heartbeat),
        h('dt', null, 'Checkpoint'),
        field('checkpoint'),
        h('dt', null, 'Validation'),
        field('validation'),
      ),
      chartEl,
    );
    this.chart = new LineChart(chartEl, {
      title: `Training loss of expert ${expert.cluster} by step`,
      xLabel: 'step',
      yLabel: 'loss',
      height: 140,
      lines: [{ label: 'loss', colour: familyColour(expert.objective) }],
      xRange: [0, expert.targetSteps],
    });
  }

  update(
    e: Expert,
    batchSize: number,
    workerName: (id: string) => string,
    /** When its worker's volunteer paused training, or null. */
    pausedSince: string | null = null,
  ): void {
    this.expert = e;
    fill(
      this.statusSlot,
      badge(e.status),
      pausedSince && e.status === 'training' ? [' ', badge('paused')] : null,
    );
    const fraction = e.targetSteps > 0 ? e.step / e.targetSteps : 0;
    fill(
      this.bar,
      progressBar(fraction, `Expert ${e.cluster}: step ${e.step} of ${e.targetSteps}`),
    );
    fill(
      this.fields.progress!,
      h('span', { dataset: { field: 'step' } }, String(e.step)),
      ` / ${e.targetSteps} (${formatPercent(fraction)})`,
    );
    fill(this.fields.loss!, formatNumber(e.loss));
    fill(this.fields.ips!, formatNumber(e.imagesPerSec));
    const eta = expertEta(e, batchSize);
    fill(this.fields.eta!, eta === null ? '—' : eta === 0 ? 'done' : formatDuration(eta));
    fill(
      this.fields.size!,
      e.size === null ? '—' : `${e.size.toLocaleString('en')} images`,
      e.valSize
        ? h('span', { class: 'muted' }, ` + ${e.valSize.toLocaleString('en')} held out`)
        : null,
    );
    fill(
      this.fields.worker!,
      e.workerId ? h('a', { href: '#/workers' }, workerName(e.workerId)) : '—',
    );
    fill(this.heartbeat, e.lastHeartbeatAt ? since(e.lastHeartbeatAt) : '—');
    fill(
      this.fields.checkpoint!,
      e.checkpointStep === null ? 'none yet' : `step ${e.checkpointStep}`,
    );
    // Validation fields arrived with checkpoint validation, acceptance with the acceptance test;
    // older coordinators lack them.
    const v = e as Expert & {
      validationLoss?: number | null;
      validationBaseline?: number | null;
      validationError?: string | null;
      acceptance?: Expert['acceptance'] | undefined;
    };
    const margins = v.acceptance ? acceptanceText(v.acceptance) : null;
    fill(
      this.fields.validation!,
      v.validationError
        ? h('span', { class: 'bad' }, `rejected: ${v.validationError}`)
        : margins
          ? h('span', { dataset: { field: 'acceptance' } }, margins)
          : typeof v.validationLoss === 'number'
            ? `held-out loss ${formatNumber(v.validationLoss)}${typeof v.validationBaseline === 'number' ? ` (untrained ${formatNumber(v.validationBaseline)})` : ''}`
            : e.status === 'validating'
              ? 'checking…'
              : '—',
    );
  }
}

/** How the run's data was split among its experts: semantic clusters, random shards, or none. */
function shardsText(run: Run): string {
  if (run.k === 1) return 'Monolith (K = 1): one expert trained on the whole dataset';
  if (run.assignment === 'random')
    return `Random shards (the baseline): ${run.k} shards of the sizes semantic clustering gives`;
  if (run.assignment === 'semantic') return `Semantic clusters: ${run.k} shards`;
  return `${run.k} shards, once the dataset is clustered`;
}

export function runPage(main: HTMLElement, runId: string): View {
  let run: Run | null = null;
  let workers = new Map<string, string>();
  /** When the worker of each expert's lease paused it (its volunteer's pause). */
  let paused = new Map<string, string>();
  const cards = new Map<string, ExpertCard>();
  let events: RunEvent[] = [];
  let filter = '';
  let exhausted = false;

  const title = h('h1', null, runId);
  const headStatus = h('div', { class: 'run-head' });
  const actions = h('div', { class: 'actions' });
  const message = h('div');
  const grid = h('div', { class: 'cards' });
  const eventBody = h('tbody');
  const more = h(
    'button',
    { type: 'button', onclick: () => void loadOlder() },
    'Load older events',
  );
  const filterSelect = h(
    'select',
    {
      'aria-label': 'Show events',
      onchange: () => {
        filter = filterSelect.value;
        renderEvents();
      },
    },
    FILTERS.map(([value, label]) => h('option', { value }, label)),
  );
  const ensemble = ensembleSection(runId);

  fill(
    main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Runs'), ' / '),
    title,
    headStatus,
    actions,
    message,
    section('Experts', grid),
    section(
      'Event log',
      h('div', { class: 'row' }, filterSelect),
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'table events-table', 'aria-label': 'Event log, newest first' },
          h(
            'thead',
            null,
            h(
              'tr',
              null,
              ['Time', 'Event', 'Expert', 'Worker', 'Details'].map((t) =>
                h('th', { scope: 'col' }, t),
              ),
            ),
          ),
          eventBody,
        ),
      ),
      more,
    ),
    ensemble.el,
  );

  const workerName = (id: string) => workers.get(id) ?? id;
  const clusterOf = (expertId: string | null) =>
    expertId ? run?.experts.find((e) => e.id === expertId)?.cluster : undefined;

  const renderHead = () => {
    if (!run) return;
    title.textContent = run.name;
    document.title = `${run.name} · Archipelago`;
    const progress = runProgress(run);
    const eta = runEta(run);
    const c = run.config;
    fill(
      headStatus,
      badge(run.status),
      h(
        'span',
        { class: 'muted' },
        `${run.k} experts (${run.objectives}) · ${c.model} model · ${c.resolution}×${c.resolution}×${c.channels} · ${c.stepsPerExpert.toLocaleString('en')} steps each, batch ${c.batchSize} · FM times ${c.fmTimeSampling ?? 'uniform'} · started `,
        since(run.createdAt),
      ),
      h(
        'p',
        {
          class: 'muted small',
          dataset: {
            field: 'assignment',
            assignment: run.assignment ?? 'pending',
            monolith: String(run.k === 1),
          },
        },
        shardsText(run),
      ),
      h(
        'div',
        { class: 'run-progress' },
        progressBar(progress, `Run progress ${formatPercent(progress)}`),
        h(
          'span',
          null,
          `${formatPercent(progress)} · ETA ${eta === null ? 'waiting for workers' : eta === 0 ? '—' : formatDuration(eta)}`,
        ),
      ),
      run.error ? h('p', { class: 'error' }, run.error) : null,
    );
    const cancellable = keys.admin && !TERMINAL_RUN_STATUSES.includes(run.status);
    fill(
      actions,
      cancellable
        ? h(
            'button',
            { type: 'button', class: 'danger', onclick: () => void cancel() },
            'Cancel run',
          )
        : null,
    );
  };

  const renderCards = () => {
    if (!run) return;
    const ids = run.experts.map((e) => e.id);
    if (ids.length !== cards.size || ids.some((id) => !cards.has(id))) {
      for (const c of cards.values()) c.chart.destroy();
      cards.clear();
      for (const e of run.experts) cards.set(e.id, new ExpertCard(run.id, e));
      fill(
        grid,
        [...cards.values()].map((c) => c.el),
      );
    }
    for (const e of run.experts)
      cards.get(e.id)!.update(e, run.config.batchSize, workerName, paused.get(e.id) ?? null);
  };

  const renderEvents = () => {
    const shown = filter ? events.filter((e) => eventCategory(e.type) === filter) : events;
    fill(
      eventBody,
      shown.length === 0
        ? h('tr', null, h('td', { colspan: 5, class: 'muted' }, 'No events.'))
        : null,
      shown.map((e) => {
        const cluster = clusterOf(e.expertId);
        return h(
          'tr',
          { class: `event cat-${eventCategory(e.type)}`, dataset: { eventId: e.id } },
          h('td', null, since(e.at)),
          h('td', null, h('span', { class: 'event-type' }, e.type)),
          h('td', null, cluster === undefined ? '' : `expert ${cluster}`),
          h('td', null, e.workerId ? workerName(e.workerId) : ''),
          h('td', null, describeEvent(e)),
        );
      }),
    );
    more.hidden = exhausted;
  };

  const loadMetrics = async () => {
    const metrics = await api<RunMetrics>(`/api/v1/runs/${runId}/metrics`);
    for (const m of metrics.experts) {
      const card = cards.get(m.expertId);
      card?.chart.setData([m.points.map((p) => p.step), m.points.map((p) => p.loss)]);
    }
  };

  const loadWorkers = async () => {
    const list = await api<WorkerList>('/api/v1/workers');
    workers = new Map(list.workers.map((w) => [w.id, w.name]));
    paused = new Map(
      list.workers.flatMap((w) =>
        w.lease?.pausedSince ? [[w.lease.expertId, w.lease.pausedSince] as const] : [],
      ),
    );
  };

  const loadRun = async () => {
    run = await api<Run>(`/api/v1/runs/${runId}`);
    renderHead();
    renderCards();
  };

  const refresh = async () => {
    try {
      const [, list] = await Promise.all([
        loadWorkers(),
        api<EventList>(`/api/v1/runs/${runId}/events?limit=${PAGE}`),
      ]);
      await loadRun();
      events = list.events;
      exhausted = list.events.length < PAGE;
      renderEvents();
      await loadMetrics();
      fill(message);
      await ensemble.refresh();
    } catch (err) {
      fill(message, errorBox(err));
    }
  };

  const loadOlder = async () => {
    const oldest = events[events.length - 1]?.id;
    if (oldest === undefined) return;
    try {
      const list = await api<EventList>(
        `/api/v1/runs/${runId}/events?limit=${PAGE}&before=${oldest}`,
      );
      events = [...events, ...list.events];
      exhausted = list.events.length < PAGE;
      renderEvents();
    } catch (err) {
      fill(message, errorBox(err));
    }
  };

  const cancel = async () => {
    if (!run) return;
    if (
      !window.confirm(
        `Cancel run "${run.name}"? Workers training its experts lose their leases and no expert of it is leased again.`,
      )
    )
      return;
    try {
      run = await api<Run>(`/api/v1/runs/${runId}/cancel`, { method: 'POST', admin: true });
      renderHead();
      renderCards();
    } catch (err) {
      fill(message, errorBox(err));
    }
  };

  const refetchRun = debounce(() => {
    loadRun().catch((err: unknown) => fill(message, errorBox(err)));
  }, 300);
  const refetchMetrics = debounce(() => {
    loadMetrics().catch(() => {});
  }, 500);
  const refetchWorkers = debounce(() => {
    loadWorkers()
      .then(() => {
        renderCards();
        renderEvents();
      })
      .catch(() => {});
  }, 500);

  const onProgress = (m: Extract<LiveMessage, { type: 'progress' }>) => {
    const expert = run?.experts.find((e) => e.id === m.expertId);
    const card = cards.get(m.expertId);
    if (!run || !expert || !card) return;
    if (expert.status !== m.status) refetchRun();
    Object.assign(expert, {
      status: m.status as ExpertStatus,
      step: m.step,
      loss: m.loss,
      imagesPerSec: m.imagesPerSec,
      ...(m.status === 'training' ? { lastHeartbeatAt: m.at } : {}),
    });
    // A pause writes no event: the progress says so.
    if (m.pausedSince) paused.set(m.expertId, m.pausedSince);
    else if (m.pausedSince === null) paused.delete(m.expertId);
    card.update(expert, run.config.batchSize, workerName, paused.get(m.expertId) ?? null);
    renderHead();
    const last = card.chart.lastX;
    // A step that went back (resumed from a checkpoint): the server knows the curve.
    if (last !== undefined && m.step < last) refetchMetrics();
    else if (m.loss !== null && m.status === 'training') card.chart.push(m.step, [m.loss]);
  };

  return {
    refresh,
    onLive(m: LiveMessage) {
      if (m.type === 'progress' && m.runId === runId) onProgress(m);
      else if (m.type === 'event') {
        const e = m.event;
        if (e.type.startsWith('worker.')) refetchWorkers();
        if (e.runId !== runId || events.some((x) => x.id === e.id)) return;
        events = [e, ...events];
        renderEvents();
        refetchRun();
        if (
          e.type.startsWith('router.') ||
          e.type.startsWith('ensemble.') ||
          e.type === 'run.published'
        )
          void ensemble.refresh();
      }
    },
    destroy() {
      refetchRun.cancel();
      refetchMetrics.cancel();
      refetchWorkers.cancel();
      for (const c of cards.values()) c.chart.destroy();
      ensemble.destroy();
    },
  };
}

/** A chart colour per objective family, in order of first appearance on the page. */
const familySeries = new Map<string, string>();
function familyColour(family: Expert['objective']): string {
  if (!familySeries.has(family))
    familySeries.set(family, `--series-${1 + (familySeries.size % 3)}`);
  return familySeries.get(family)!;
}
