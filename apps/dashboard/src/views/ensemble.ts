/**
 * A run's published ensemble: router accuracy by noise level, the signed manifest (download and
 * signature check), its score (FD-cls and the rest, "pending" while the coordinator computes it)
 * and a sample gallery that calls the sampling endpoint.
 */
import type {
  Ensemble,
  EnsembleList,
  EnsembleScoreReply,
  JobProgress,
  RoutingStrategy,
  SampleRequest,
  SampleResponse,
} from '@archipelago/protocol';
import { api, HttpError, withKey } from '../api.js';
import { LineChart } from '../charts.js';
import { fill, h } from '../dom.js';
import { binCentres, formatNumber, formatPercent, formatTime } from '../format.js';
import { errorBox } from '../ui.js';
import type { Verification } from '../workers-api.js';

const ROUTINGS = [
  ['top-1', 'Top-1: the most likely expert'],
  ['top-k', 'Top-k experts'],
  ['full', 'Full: every expert, weighted'],
  ['threshold', 'Threshold: experts with p ≥ τ'],
] as const satisfies readonly (readonly [RoutingStrategy, string])[];

export interface EnsembleSection {
  el: HTMLElement;
  refresh(): Promise<void>;
  destroy(): void;
}

export function ensembleSection(runId: string): EnsembleSection {
  const body = h('div');
  const el = h(
    'section',
    { class: 'panel', id: 'ensemble', 'aria-labelledby': 'ensemble-title' },
    h('h2', { id: 'ensemble-title' }, 'Ensemble'),
    body,
  );
  let chart: LineChart | null = null;
  let shownId: string | null = null;
  let ensembles: Ensemble[] = [];
  /** The next look at a pending score. */
  let scoreTimer: ReturnType<typeof setTimeout> | null = null;

  const clearChart = () => {
    chart?.destroy();
    chart = null;
    if (scoreTimer) clearTimeout(scoreTimer);
    scoreTimer = null;
  };

  /** The score of `ens` into `out`; looked at again every 2 s while it is pending. */
  const loadScore = async (ens: Ensemble, out: HTMLElement) => {
    scoreTimer = null;
    try {
      const score = await api<EnsembleScoreReply>(`/api/v1/ensembles/${ens.id}/score`);
      if (shownId === ens.id) fill(out, scoreView(score));
      out.dataset.scoreState = 'scored';
    } catch (err) {
      if (shownId !== ens.id) return;
      const code = err instanceof HttpError ? err.code : '';
      const message = err instanceof Error ? err.message : String(err);
      if (code === 'score_pending') {
        const p = (err as HttpError).details?.progress as JobProgress | null | undefined;
        out.dataset.scoreState = 'pending';
        fill(
          out,
          h(
            'p',
            { class: 'muted', role: 'status' },
            h('strong', null, 'Pending'),
            p
              ? ` · ${p.stage} ${p.done}/${p.total}`
              : ' · the coordinator samples and scores the ensemble',
          ),
        );
        scoreTimer = setTimeout(() => void loadScore(ens, out), 2000);
        return;
      }
      out.dataset.scoreState =
        code === 'score_failed' ? 'failed' : code === 'score_disabled' ? 'disabled' : 'none';
      fill(
        out,
        code === 'score_failed'
          ? h('p', { class: 'bad' }, h('strong', null, 'Scoring failed: '), message)
          : code === 'score_disabled' || code === 'not_scored'
            ? h('p', { class: 'muted' }, message)
            : errorBox(err),
      );
    }
  };

  const show = (ens: Ensemble) => {
    clearChart();
    shownId = ens.id;
    const chartEl = h('div', { dataset: { chart: 'router-accuracy' } });
    const verifyEl = h(
      'div',
      { class: 'verify', 'aria-live': 'polite' },
      'Checking the signature…',
    );
    const scoreEl = h(
      'div',
      { class: 'score', 'aria-live': 'polite', dataset: { score: '', scoreState: 'loading' } },
      'Loading the score…',
    );
    const picker =
      ensembles.length > 1
        ? h(
            'label',
            null,
            'Ensemble ',
            h(
              'select',
              {
                onchange: (e: Event) => {
                  const next = ensembles.find(
                    (x) => x.id === (e.target as HTMLSelectElement).value,
                  );
                  if (next) show(next);
                },
              },
              ensembles.map((x) =>
                h(
                  'option',
                  { value: x.id, selected: x.id === ens.id },
                  `${x.id} (${formatTime(x.createdAt)})`,
                ),
              ),
            ),
          )
        : null;
    const acc = ens.routerAccuracy;
    const best = Math.max(...acc.accuracy);
    fill(
      body,
      picker,
      h(
        'div',
        { class: 'ensemble-grid' },
        h(
          'div',
          null,
          h('h3', null, 'Router accuracy by noise level'),
          chartEl,
          h(
            'p',
            { class: 'muted small' },
            `Held-out accuracy of the router per bin of flow-matching time t (0 = clean data, 1 = pure noise); dashed: chance (${formatPercent(acc.chance)}, always the largest cluster). Best ${formatPercent(best)}.`,
          ),
          h(
            'details',
            null,
            h('summary', null, 'Accuracy table'),
            h(
              'table',
              { class: 'table' },
              h(
                'thead',
                null,
                h(
                  'tr',
                  null,
                  ['t', 'accuracy', 'samples'].map((t) => h('th', { scope: 'col' }, t)),
                ),
              ),
              h(
                'tbody',
                null,
                acc.accuracy.map((a, i) =>
                  h(
                    'tr',
                    null,
                    h(
                      'td',
                      null,
                      `${formatNumber(acc.edges[i])}–${formatNumber(acc.edges[i + 1])}`,
                    ),
                    h('td', null, formatPercent(a)),
                    h('td', null, String(acc.counts[i] ?? '')),
                  ),
                ),
              ),
            ),
          ),
        ),
        h(
          'div',
          null,
          h('h3', null, 'Manifest'),
          h(
            'p',
            null,
            h(
              'a',
              {
                class: 'button',
                href: withKey(`/api/v1/ensembles/${ens.id}/manifest.json`),
                download: `${ens.id}.manifest.json`,
                dataset: { action: 'download-manifest' },
              },
              'Download manifest',
            ),
          ),
          h(
            'dl',
            { class: 'facts' },
            h('dt', null, 'Id'),
            h('dd', null, h('code', null, ens.id)),
            h('dt', null, 'sha256'),
            h('dd', null, h('code', { class: 'hash' }, ens.manifestSha256)),
            h('dt', null, 'Signed by'),
            h('dd', null, h('code', null, ens.keyId)),
            h('dt', null, 'Experts'),
            h('dd', null, String(ens.experts)),
            h('dt', null, 'Published'),
            h('dd', null, formatTime(ens.createdAt)),
            h('dt', null, 'Defaults'),
            h(
              'dd',
              null,
              `${ens.inference.routing}, ${ens.inference.sampler} ${ens.inference.steps} steps, ${ens.inference.conversion} conversion`,
            ),
          ),
          verifyEl,
        ),
      ),
      h('div', { class: 'score-panel' }, h('h3', null, 'Score'), scoreEl),
      sampler(ens),
    );
    chart = new LineChart(
      chartEl,
      {
        title: `Router accuracy by noise level; chance ${formatPercent(acc.chance)}`,
        xLabel: 't',
        yLabel: 'accuracy',
        height: 200,
        xRange: [0, 1],
        yRange: [0, 1],
        legend: true,
        lines: [
          { label: 'router', colour: '--series-1', points: true },
          { label: 'chance', colour: '--muted', dash: [6, 4], width: 1.5 },
        ],
      },
      [binCentres(acc.edges), acc.accuracy, acc.accuracy.map(() => acc.chance)],
    );
    void verify(ens, verifyEl);
    if (scoreTimer) clearTimeout(scoreTimer);
    void loadScore(ens, scoreEl);
  };

  const verify = async (ens: Ensemble, out: HTMLElement) => {
    try {
      const v = await api<Verification>(`/api/v1/ensembles/${ens.id}/verify`);
      const mark = (ok: boolean, yes: string, no: string) =>
        h('li', { class: ok ? 'ok' : 'bad' }, ok ? `✓ ${yes}` : `✗ ${no}`);
      fill(
        out,
        h(
          'p',
          { class: v.ok ? 'ok' : 'bad', dataset: { verified: v.ok } },
          h('strong', null, v.ok ? 'Signature valid' : 'Verification failed'),
        ),
        v.error ? h('p', { class: 'bad small' }, v.error) : null,
        h(
          'ul',
          { class: 'checks' },
          mark(
            v.signature,
            'Ed25519 signature matches the coordinator key',
            'signature does not verify',
          ),
          mark(v.id, 'id is the hash of the content', 'id does not match the content'),
          v.trusted === undefined
            ? null
            : mark(v.trusted, "signed with this coordinator's key", 'signed with another key'),
          v.checkpoints.map((c) =>
            mark(
              c.ok,
              `${c.name}: sha256 and size match`,
              `${c.name}: ${c.reason ?? 'does not match'}`,
            ),
          ),
        ),
      );
    } catch (err) {
      fill(
        out,
        errorBox(err instanceof Error ? new Error(`Could not verify: ${err.message}`) : err),
      );
    }
  };

  const sampler = (ens: Ensemble): HTMLElement => {
    const d = ens.inference;
    const num = (
      name: string,
      label: string,
      value: number | string,
      attrs: Record<string, unknown>,
    ) =>
      h(
        'label',
        { dataset: { for: name } },
        label,
        h('input', { name, type: 'number', value, ...attrs }),
      );
    const routing = h(
      'select',
      { name: 'routing' },
      ROUTINGS.map(([v, label]) => h('option', { value: v, selected: v === d.routing }, label)),
    );
    const kField = num('k', 'k', d.topK, { min: 1, max: Math.max(1, ens.experts), step: 1 });
    const tauField = num('tau', 'τ', d.threshold, { min: 0, max: 1, step: 0.05 });
    const syncFields = () => {
      kField.hidden = routing.value !== 'top-k';
      tauField.hidden = routing.value !== 'threshold';
    };
    routing.addEventListener('change', syncFields);
    syncFields();
    const submit = h('button', { type: 'submit' }, 'Sample');
    const status = h('p', { class: 'muted small', role: 'status' });
    const gallery = h('div', { class: 'gallery', dataset: { gallery: '' } });
    const form = h(
      'form',
      { class: 'sample-form', 'aria-label': 'Sample from the ensemble' },
      h('label', null, 'Routing ', routing),
      kField,
      tauField,
      num('seed', 'Seed', 0, { min: 0, max: 2 ** 31 - 1, step: 1, required: true }),
      num('count', 'Images', 8, { min: 1, max: 64, step: 1, required: true }),
      num('steps', 'Steps', d.steps, { min: 1, max: 200, step: 1, required: true }),
      num('class', 'Class (optional)', '', { min: 0, step: 1, placeholder: 'any' }),
      submit,
    );
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const data = new FormData(form);
      const int = (name: string) => Number.parseInt(String(data.get(name) ?? ''), 10);
      const request: SampleRequest = {
        count: int('count'),
        seed: int('seed'),
        steps: int('steps'),
        routing: routing.value as RoutingStrategy,
      };
      if (request.routing === 'top-k') request.k = int('k');
      if (request.routing === 'threshold') request.tau = Number(data.get('tau'));
      const cls = String(data.get('class') ?? '').trim();
      if (cls !== '') request.class = Number.parseInt(cls, 10);
      submit.disabled = true;
      gallery.setAttribute('aria-busy', 'true');
      status.textContent = `Sampling ${request.count} images…`;
      api<SampleResponse>(`/api/v1/ensembles/${ens.id}/samples`, { method: 'POST', body: request })
        .then((res) => {
          status.textContent = `${res.images.length} images in ${res.seconds.toFixed(1)} s · ${res.settings.routing}, ${res.settings.sampler} ${res.settings.steps} steps, seed ${res.settings.seed} · ${formatNumber(res.routing.meanExpertsPerSample)} experts per sample per step`;
          renderGallery(gallery, res);
        })
        .catch((err: unknown) => {
          status.textContent = '';
          fill(gallery, errorBox(err));
        })
        .finally(() => {
          submit.disabled = false;
          gallery.removeAttribute('aria-busy');
        });
    });
    return h('div', { class: 'sampler' }, h('h3', null, 'Samples'), form, status, gallery);
  };

  return {
    el,
    async refresh() {
      try {
        ensembles = (await api<EnsembleList>(`/api/v1/runs/${runId}/ensembles`)).ensembles;
      } catch (err) {
        if (err instanceof HttpError && err.status === 404) ensembles = [];
        else {
          fill(body, errorBox(err));
          return;
        }
      }
      if (ensembles.length === 0) {
        clearChart();
        shownId = null;
        fill(
          body,
          h(
            'p',
            { class: 'muted' },
            'No ensemble yet: one is published once every expert is validated and the router is trained.',
          ),
        );
        return;
      }
      // Keep what the user is looking at (and their sampling form) unless it is gone.
      const current = ensembles.find((e) => e.id === shownId);
      if (!current) show(ensembles[0]!);
    },
    destroy: clearChart,
  };
}

/** A stored score: the numbers beside the real-train reference, the settings, the figure. */
function scoreView(score: EnsembleScoreReply): HTMLElement {
  const s = score.scores;
  const r = score.reference;
  const f = (v: number | null, digits = 3) => (v === null ? 'n/a' : v.toFixed(digits));
  const rows: [string, string, string, string][] = [
    ['fdCls', 'FD-cls (lower is better)', f(s.fdCls, 2), f(r.fdCls, 2)],
    ['precision', 'Precision', f(s.precision), f(r.precision)],
    ['recall', 'Recall', f(s.recall), f(r.recall)],
    [
      'intraClassDiversity',
      'Intra-class diversity',
      f(s.intraClassDiversity),
      f(r.intraClassDiversity),
    ],
    [
      'meanComponents',
      'Fragment index: components per image',
      f(s.fragments.generated.meanComponents, 2),
      f(r.fragments.meanComponents, 2),
    ],
    [
      'fragmented',
      'Fragmented (more than one component)',
      formatPercent(s.fragments.generated.fragmented),
      formatPercent(r.fragments.fragmented),
    ],
  ];
  const st = score.settings;
  return h(
    'div',
    { class: 'ensemble-grid' },
    h(
      'div',
      null,
      h(
        'table',
        { class: 'table score-table', 'aria-label': 'Scores of the ensemble' },
        h('caption', { class: 'muted small' }, score.metricName),
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            ['', `${s.counts.generated} samples`, 'Real train images'].map((t) =>
              h('th', { scope: 'col' }, t),
            ),
          ),
        ),
        h(
          'tbody',
          null,
          rows.map(([field, label, a, b]) =>
            h(
              'tr',
              { dataset: { scoreRow: field } },
              h('th', { scope: 'row' }, label),
              h('td', { dataset: { scoreField: field } }, a),
              h('td', { dataset: { referenceField: field } }, b),
            ),
          ),
        ),
      ),
      h(
        'p',
        { class: 'muted small' },
        `${st.samples} samples (classes ${st.classes}), seed ${st.seed}: ${st.sampler} ${st.steps} steps, routing ${st.routing}, guidance ${st.guidance}, ${st.conversion} conversion; against ${s.counts.real} held-out ${score.dataset.name} images at ${score.dataset.resolution}x${score.dataset.resolution}, k = ${s.k}. Classifier ${score.classifier.file} (held-out accuracy ${formatPercent(score.classifier.heldOutAccuracy)}). Scored ${formatTime(score.scoredAt)}.`,
      ),
    ),
    h('img', {
      class: 'score-figure',
      src: withKey(score.figureUrl),
      alt: `The scored samples beside their scores: ${score.metricName} ${f(s.fdCls, 2)}`,
      dataset: { scoreFigure: '' },
    }),
  );
}

function renderGallery(gallery: HTMLElement, res: SampleResponse): void {
  const totals = res.routing.totals;
  const all = totals.reduce((a, b) => a + b, 0) || 1;
  fill(
    gallery,
    h(
      'div',
      { class: 'samples' },
      res.images.map((b64, i) => {
        const s = res.perSample[i];
        const used = s
          ? s.evaluations
              .map((n, k) => [k, n] as const)
              .filter(([, n]) => n > 0)
              .map(([k, n]) => `e${k}×${n}`)
              .join(' ')
          : '';
        return h(
          'figure',
          { class: 'sample', dataset: { sample: i } },
          h('img', {
            src: b64.startsWith('data:') ? b64 : `data:image/png;base64,${b64}`,
            alt: s ? `Sample ${i + 1}, mostly expert ${s.dominant}` : `Sample ${i + 1}`,
          }),
          h(
            'figcaption',
            null,
            s ? h('strong', null, `expert ${s.dominant}`) : null,
            h('span', { class: 'muted small block' }, used),
          ),
        );
      }),
    ),
    h(
      'table',
      {
        class: 'table routing-totals',
        'aria-label': 'Expert evaluations over all samples and steps',
      },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          ['Expert', 'Evaluations', 'Share'].map((t) => h('th', { scope: 'col' }, t)),
        ),
      ),
      h(
        'tbody',
        null,
        totals.map((n, k) =>
          h(
            'tr',
            null,
            h('td', null, `expert ${k}`),
            h('td', null, String(n)),
            h('td', null, formatPercent(n / all)),
          ),
        ),
      ),
    ),
  );
}
