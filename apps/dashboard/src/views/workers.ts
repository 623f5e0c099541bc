/**
 * `#/workers`: who is connected (and whether its volunteer paused it), their hardware, backend,
 * objective, current lease and throughput; with the admin key, the worker tokens (create, revoke).
 */
import type { LiveMessage, Run, RunList } from '@archipelago/protocol';
import { api, keys } from '../api.js';
import { debounce, fill, h } from '../dom.js';
import { formatBytes, formatNumber, formatTime } from '../format.js';
import { badge, errorBox, section, since } from '../ui.js';
import type { TokenInfo, WorkerInfo, WorkerList } from '../workers-api.js';
import type { View } from './view.js';

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

function hardware(w: WorkerInfo): string {
  const hw = w.hardware;
  if (!hw) return '—';
  const parts = [
    hw.cpus ? plural(hw.cpus, 'CPU') : null,
    hw.threads ? `${plural(hw.threads, 'training thread')}` : null,
    hw.memoryBytes ? formatBytes(hw.memoryBytes) : null,
    hw.gpu ? `GPU ${hw.gpu.index}${hw.gpu.name ? ` ${hw.gpu.name}` : ''}` : null,
  ];
  return parts.filter(Boolean).join(' · ');
}

export function workersPage(main: HTMLElement): View {
  let workers: WorkerInfo[] = [];
  let runs: Run[] = [];
  const message = h('div');
  const body = h('tbody');
  const tokens = h('div');
  fill(
    main,
    h('h1', null, 'Workers'),
    message,
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'table', 'aria-label': 'Workers' },
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            [
              'Worker',
              'Status',
              'Hardware',
              'Backend',
              'Objective',
              'Current lease',
              'Throughput',
            ].map((t) => h('th', { scope: 'col' }, t)),
          ),
        ),
        body,
      ),
    ),
    tokens,
  );

  const leaseOf = (w: WorkerInfo) => {
    if (!w.lease) return null;
    for (const run of runs) {
      const expert = run.experts.find((e) => e.id === w.lease!.expertId);
      if (expert) return { run, expert };
    }
    return null;
  };

  const render = () => {
    fill(
      body,
      workers.length === 0
        ? h('tr', null, h('td', { colspan: 7, class: 'muted' }, 'No worker has connected yet.'))
        : null,
      workers.map((w) => {
        const lease = leaseOf(w);
        return h(
          'tr',
          { dataset: { worker: w.id } },
          h('th', { scope: 'row' }, w.name, h('span', { class: 'muted small block' }, w.id)),
          h(
            'td',
            null,
            badge(w.online ? 'online' : 'offline'),
            w.lease?.pausedSince
              ? [
                  ' ',
                  badge('paused'),
                  h('span', { class: 'small block' }, 'paused ', since(w.lease.pausedSince)),
                ]
              : null,
            h('span', { class: 'small block' }, 'seen ', since(w.lastSeenAt)),
          ),
          h('td', null, hardware(w)),
          h('td', null, w.backend ?? '—'),
          h('td', null, w.objective),
          h(
            'td',
            null,
            lease
              ? [
                  h('a', { href: `#/runs/${lease.run.id}` }, lease.run.name),
                  ` · expert ${lease.expert.cluster} · step ${lease.expert.step}/${lease.expert.targetSteps}`,
                ]
              : w.lease
                ? w.lease.expertId
                : '—',
          ),
          h(
            'td',
            null,
            lease?.expert.imagesPerSec ? `${formatNumber(lease.expert.imagesPerSec)} img/s` : '—',
          ),
        );
      }),
    );
  };

  const renderTokens = async () => {
    if (!keys.admin) {
      fill(
        tokens,
        section(
          'Worker tokens',
          h(
            'p',
            { class: 'muted' },
            'Enter the admin key (Keys, top right) to see and manage worker tokens.',
          ),
        ),
      );
      return;
    }
    let list: TokenInfo[];
    try {
      list = (await api<{ tokens: TokenInfo[] }>('/api/v1/tokens', { admin: true })).tokens;
    } catch (err) {
      fill(tokens, section('Worker tokens', errorBox(err)));
      return;
    }
    const secret = h('div', { 'aria-live': 'polite' });
    const nameInput = h('input', {
      name: 'name',
      required: true,
      maxlength: 100,
      placeholder: 'e.g. alice',
    });
    const form = h(
      'form',
      { class: 'row', 'aria-label': 'Create a worker token' },
      h('label', null, 'Name ', nameInput),
      h('button', { type: 'submit' }, 'Create token'),
    );
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      api<TokenInfo & { token: string }>('/api/v1/tokens', {
        method: 'POST',
        admin: true,
        body: { name: nameInput.value.trim() },
      })
        .then(async (created) => {
          await renderTokens();
          // The secret is shown once: after a re-render it is gone for good.
          fill(
            tokens.querySelector('[data-secret]') ?? secret,
            h(
              'p',
              { class: 'secret' },
              `Token for ${created.name} (shown once, copy it now): `,
              h('code', null, created.token),
            ),
          );
        })
        .catch((err: unknown) => fill(secret, errorBox(err)));
    });
    const revoke = (t: TokenInfo) => {
      if (
        !window.confirm(
          `Revoke token "${t.name}"? Its workers are disconnected and their leases end.`,
        )
      )
        return;
      api(`/api/v1/tokens/${t.id}`, { method: 'DELETE', admin: true })
        .then(() => renderTokens())
        .catch((err: unknown) => fill(secret, errorBox(err)));
    };
    secret.dataset.secret = '';
    fill(
      tokens,
      section(
        'Worker tokens',
        form,
        secret,
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'table', 'aria-label': 'Worker tokens' },
            h(
              'thead',
              null,
              h(
                'tr',
                null,
                ['Name', 'Prefix', 'Created', 'Last used', 'State', ''].map((t) =>
                  h('th', { scope: 'col' }, t),
                ),
              ),
            ),
            h(
              'tbody',
              { dataset: { tokens: '' } },
              list.map((t) =>
                h(
                  'tr',
                  { dataset: { token: t.id } },
                  h('th', { scope: 'row' }, t.name),
                  h('td', null, h('code', null, `${t.prefix}…`)),
                  h('td', null, formatTime(t.createdAt)),
                  h('td', null, t.lastUsedAt ? since(t.lastUsedAt) : 'never'),
                  h('td', null, badge(t.revokedAt ? 'revoked' : 'active')),
                  h(
                    'td',
                    null,
                    t.revokedAt
                      ? null
                      : h(
                          'button',
                          { type: 'button', class: 'danger', onclick: () => revoke(t) },
                          'Revoke',
                        ),
                  ),
                ),
              ),
            ),
          ),
        ),
      ),
    );
  };

  const refresh = async () => {
    try {
      const [w, r] = await Promise.all([
        api<WorkerList>('/api/v1/workers'),
        api<RunList>('/api/v1/runs'),
      ]);
      workers = w.workers;
      runs = r.runs;
      fill(message);
      render();
    } catch (err) {
      fill(message, errorBox(err));
    }
    await renderTokens();
  };
  const refetch = debounce(() => void refresh(), 1000);
  const refetchTokens = debounce(() => void renderTokens(), 500);
  // A worker that drops its connection writes no event: look again now and then.
  const poll = setInterval(refetch, 15_000);

  return {
    refresh,
    onLive(m: LiveMessage) {
      if (m.type === 'progress') {
        const expert = runs.flatMap((r) => r.experts).find((e) => e.id === m.expertId);
        if (expert) Object.assign(expert, { step: m.step, imagesPerSec: m.imagesPerSec });
        // A pause writes no event: its expert's progress says so.
        const holder = workers.find((w) => w.lease?.expertId === m.expertId);
        if (holder?.lease && m.pausedSince !== undefined) holder.lease.pausedSince = m.pausedSince;
        if (expert || holder) render();
        return;
      }
      if (m.type !== 'event') return;
      const t = m.event.type;
      if (t.startsWith('token.')) refetchTokens();
      if (
        t.startsWith('worker.') ||
        t.startsWith('lease.') ||
        t.startsWith('expert.') ||
        t.startsWith('token.')
      )
        refetch();
    },
    destroy() {
      clearInterval(poll);
      refetch.cancel();
      refetchTokens.cancel();
    },
  };
}
