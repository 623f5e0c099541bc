/**
 * The dashboard in real headless Chromium against a real coordinator process and a real worker
 * process training a tiny two-expert run on 8x8 MNIST: the run page updates live (no reload),
 * the loss curves fill, the workers page shows the worker (paused by SIGUSR1, then training
 * again), the admin key unlocks the token panel; then, once the run is published, the
 * ensemble's score appears (the coordinator's job, on 20 samples), the manifest download
 * verifies and samples render.
 * Screenshots (light and dark) go to apps/dashboard/test-artifacts/ for people to look at.
 */
import { createHash, createPublicKey, verify } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  canonicalJson,
  type EnsembleList,
  type EnsembleManifest,
  type EnsembleScoreReply,
  type EventList,
  type KeyList,
  type Run,
} from '@archipelago/protocol';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN_KEY,
  Coordinator,
  checkPrerequisites,
  Fatal,
  freePort,
  launchChromium,
  type Proc,
  startWorker,
  until,
} from './harness.js';

const ARTIFACTS = path.resolve(import.meta.dirname, '../test-artifacts');
const STEPS = 100;

/** Does a downloaded manifest verify: id = hash of the body, Ed25519 signature over body + id? */
function manifestVerifies(manifest: EnsembleManifest): boolean {
  const { id, signature, ...body } = manifest;
  const expectedId = `ens_${createHash('sha256').update(canonicalJson(body)).digest('hex').slice(0, 32)}`;
  if (id !== expectedId) return false;
  const key = createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: signature.publicKey },
    format: 'jwk',
  });
  return verify(
    null,
    Buffer.from(canonicalJson({ ...body, id })),
    key,
    Buffer.from(signature.value, 'base64url'),
  );
}

/** Relative luminance of a CSS `rgb(...)` colour. */
function luminance(css: string): number {
  const [r, g, b] = (css.match(/\d+(\.\d+)?/g) ?? []).slice(0, 3).map(Number);
  return (0.2126 * r! + 0.7152 * g! + 0.0722 * b!) / 255;
}

describe('dashboard in Chromium', () => {
  let dir: string;
  let coord: Coordinator;
  let browser: Browser;
  let page: Page;
  let run: Run;
  let worker: Proc | null = null;
  const foreign: string[] = [];
  const pageErrors: string[] = [];

  const shot = async (name: string) => {
    await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
  };
  const scheme = async (colorScheme: 'light' | 'dark') => {
    await page.emulateMedia({ colorScheme });
    await page.waitForFunction(
      (dark) => window.matchMedia('(prefers-color-scheme: dark)').matches === dark,
      colorScheme === 'dark',
    );
    // Charts are rebuilt with the scheme's colours on the change event; let a frame pass.
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r(null))));
  };
  const bodyBackground = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  /** Every expert's step as the page shows it. */
  const shownSteps = () =>
    page.$$eval('[data-expert] [data-field="step"]', (els) =>
      els.map((e) => Number(e.textContent)),
    );

  beforeAll(async () => {
    checkPrerequisites();
    mkdirSync(ARTIFACTS, { recursive: true });
    dir = await mkdtemp(path.join(tmpdir(), 'arch-dashboard-'));
    coord = new Coordinator(await freePort(), path.join(dir, 'data'));
    const launching = launchChromium();
    await coord.start({
      ARCHIPELAGO_HEARTBEAT_MS: '300',
      ARCHIPELAGO_LEASE_TTL_MS: '3000',
      // Keep the router quick: this tests the dashboard, not the models.
      ARCHIPELAGO_ROUTER_STEPS: '40',
      // Score the ensemble on a few samples (the shipped 8x8 MNIST classifier).
      ARCHIPELAGO_SCORE_SAMPLES: '20',
    });
    const [datasetId, token] = await Promise.all([
      coord.importMnist(2),
      coord.api<{ token: string }>('POST', '/api/v1/tokens', { name: 'e2e' }),
    ]);
    run = await coord.api<Run>('POST', '/api/v1/runs', {
      name: 'mnist e2e',
      datasetId,
      experts: 2,
      // Mixed objectives, as the system is meant to run; one `any` worker trains both.
      objectives: 'ddpm:1,fm:1',
      stepsPerExpert: STEPS,
      checkpointInterval: 50,
      batchSize: 8,
      model: 'tiny',
      // A few dozen steps are far short of the default acceptance bar (docs/method.md §12).
      acceptance: { maxMidRatio: 1e6, maxHighRatio: 1e6, minSpecificity: 0 },
    });
    worker = startWorker(coord.url, token.token, path.join(dir, 'work'));
    browser = await launching;
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    page.on('request', (r) => {
      const url = r.url();
      if (!url.startsWith(`${coord.url}/`) && !url.startsWith('data:')) foreign.push(url);
    });
    page.on('pageerror', (err) => pageErrors.push(err.message));
  });

  afterAll(async () => {
    await browser?.close();
    await worker?.stop('SIGKILL');
    await coord?.proc?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('shows training live: steps rise and the loss curve fills without a reload', async () => {
    await page.goto(`${coord.url}/#/runs/${run.id}`);
    await page.evaluate(() => {
      (window as unknown as { loadMarker: string }).loadMarker = 'first load';
    });
    await page.waitForSelector('#live[data-state="live"]', { timeout: 15_000 });
    await expect.poll(() => page.locator('[data-expert]').count()).toBe(2);
    await expect(page.locator('h1').textContent()).resolves.toBe('mnist e2e');
    // How the data was split: the dataset's two semantic clusters.
    const split = page.locator('[data-field="assignment"]');
    await expect.poll(() => split.getAttribute('data-assignment')).toBe('semantic');
    await expect(split.getAttribute('data-monolith')).resolves.toBe('false');
    await expect(split.textContent()).resolves.toBe('Semantic clusters: 2 shards');

    // The expert in training moves on while we watch.
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll('[data-expert] [data-field="step"]')].some(
          (e) => Number(e.textContent) > 0,
        ),
      null,
      { timeout: 60_000 },
    );
    const first = await shownSteps();
    const firstTotal = first.reduce((a, b) => a + b, 0);
    await page.waitForFunction(
      (before) =>
        [...document.querySelectorAll('[data-expert] [data-field="step"]')]
          .map((e) => Number(e.textContent))
          .reduce((a, b) => a + b, 0) >
        before + 10,
      firstTotal,
      { timeout: 30_000 },
    );
    // ...and its loss curve has points, drawn on a canvas.
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll<HTMLElement>('[data-chart^="loss-"]')].some(
          (c) => Number(c.dataset.points) >= 3 && c.querySelector('canvas') !== null,
        ),
      null,
      { timeout: 30_000 },
    );
    const points = await page.$$eval('[data-chart^="loss-"]', (els) =>
      els.map((e) => Number((e as HTMLElement).dataset.points)),
    );
    expect(Math.max(...points)).toBeGreaterThanOrEqual(3);
    // The page was never reloaded: the marker set after the first load is still there.
    expect(
      await page.evaluate(() => ({
        marker: (window as unknown as { loadMarker?: string }).loadMarker,
        loads: performance.getEntriesByType('navigation').length,
      })),
    ).toEqual({ marker: 'first load', loads: 1 });
    // The event log shows the lease, the worker's name and the example strip loaded.
    await expect
      .poll(() => page.locator('.events-table .event-type', { hasText: 'lease.granted' }).count())
      .toBeGreaterThan(0);
    await expect
      .poll(() => page.$$eval('dd[data-field="worker"]', (els) => els.map((e) => e.textContent)))
      .toContain('e2e-volunteer');
    await expect
      .poll(() =>
        page.$$eval(
          'img.examples',
          (imgs) =>
            (imgs as HTMLImageElement[]).filter((i) => i.complete && i.naturalWidth > 0).length,
        ),
      )
      .toBe(2);

    await scheme('light');
    const light = await bodyBackground();
    await shot('run-light');
    await scheme('dark');
    const dark = await bodyBackground();
    expect(luminance(light)).toBeGreaterThan(0.8);
    expect(luminance(dark)).toBeLessThan(0.2);
    // Charts were rebuilt and still show their points.
    expect(Number(await page.locator('[data-chart="loss-0"]').getAttribute('data-points'))).toBe(
      points[0],
    );
    await shot('run-dark');
  });

  it('workers page by keyboard: the connected worker with its lease; tokens with the admin key', async () => {
    await page.focus('a[data-nav="workers"]');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => location.hash === '#/workers');
    const row = page.locator('tr[data-worker]', { hasText: 'e2e-volunteer' });
    await expect.poll(() => row.count(), { timeout: 15_000 }).toBe(1);
    await expect(row.textContent()).resolves.toMatch(/online/);
    await expect(row.textContent()).resolves.toMatch(/wasm/);
    await expect(row.textContent()).resolves.toMatch(/mnist e2e · expert \d/);
    await shot('workers-dark');

    // The volunteer pauses the worker (SIGUSR1): the row says so without a reload, and again
    // once it resumes (SIGUSR2).
    const pausedBadge = row.locator('.badge.status-paused');
    worker!.child.kill('SIGUSR1');
    await expect.poll(() => pausedBadge.count(), { timeout: 15_000 }).toBe(1);
    await expect(row.textContent()).resolves.toMatch(/paused\s*paused/);
    await shot('workers-paused');
    // The run page's expert card says so too.
    await page.evaluate((id) => {
      location.hash = `#/runs/${id}`;
    }, run.id);
    const pausedCard = page.locator('article[data-expert] .badge.status-paused');
    await expect.poll(() => pausedCard.count(), { timeout: 15_000 }).toBe(1);
    await page.evaluate(() => {
      location.hash = '#/workers';
    });
    worker!.child.kill('SIGUSR2');
    await expect.poll(() => row.count(), { timeout: 15_000 }).toBe(1);
    await expect.poll(() => pausedBadge.count(), { timeout: 15_000 }).toBe(0);

    // No token panel without the admin key; enter it with the keyboard.
    await expect(page.locator('[data-tokens]').count()).resolves.toBe(0);
    await page.focus('#keys summary');
    await page.keyboard.press('Enter');
    await page.locator('#admin-key').fill(ADMIN_KEY);
    await page.locator('#admin-key').press('Enter');
    const tokenRow = page.locator('[data-tokens] tr', { hasText: 'e2e' });
    await expect.poll(() => tokenRow.count(), { timeout: 10_000 }).toBe(1);
    await expect(tokenRow.textContent()).resolves.toMatch(/active/);
    await scheme('light');
    await shot('workers-light');
    expect(
      await page.evaluate(() => (window as unknown as { loadMarker?: string }).loadMarker),
    ).toBe('first load');
  });

  it('runs overview: state, progress and start of every run', async () => {
    await page.click('a[data-nav="runs"]');
    const row = page.locator(`tr[data-run="${run.id}"]`);
    await expect.poll(() => row.count(), { timeout: 10_000 }).toBe(1);
    await expect(row.textContent()).resolves.toMatch(/mnist e2e/);
    await expect(
      row.locator('[role="progressbar"]').getAttribute('aria-valuenow'),
    ).resolves.toMatch(/^\d+$/);
    await shot('overview-light');
    await scheme('dark');
    await shot('overview-dark');
    await scheme('light');
    // Everything came from the coordinator: no CDN, no fonts from elsewhere.
    expect(foreign).toEqual([]);
    expect(pageErrors).toEqual([]);
  });

  it('ensemble: router accuracy plot, the manifest download verifies, and samples render', async () => {
    await until(
      'the run to be published',
      async () => {
        const r = await coord.api<Run>('GET', `/api/v1/runs/${run.id}`);
        if (r.status === 'failed') throw new Fatal(`run failed: ${r.error}`);
        return r.status === 'published';
      },
      90_000,
      500,
    ).catch(async (err: Error) => {
      // Say where it stopped: the run's last events.
      const log = await coord.api<EventList>('GET', `/api/v1/runs/${run.id}/events?limit=8`);
      throw new Error(
        `${err.message}; last events:\n${log.events.map((e) => `  ${e.type} ${JSON.stringify(e.data)}`).join('\n')}`,
      );
    });
    await page.goto(`${coord.url}/#/runs/${run.id}`);
    await page.waitForFunction(
      () =>
        Number(
          document.querySelector<HTMLElement>('[data-chart="router-accuracy"]')?.dataset.points,
        ) > 0,
      null,
      { timeout: 20_000 },
    );
    await page.waitForSelector('[data-verified="true"]', { timeout: 20_000 });
    // The score: "pending" while the coordinator's job runs (the page looks again by itself),
    // then the table beside the real-train reference, and the figure.
    const scoreState = () =>
      page.$eval('[data-score]', (e) => (e as HTMLElement).dataset.scoreState ?? '');
    await expect.poll(scoreState, { timeout: 90_000, interval: 250 }).toBe('scored');
    const scoreCells = await page.$$eval('[data-score-field]', (els) =>
      Object.fromEntries(
        els.map((e) => [(e as HTMLElement).dataset.scoreField, e.textContent ?? '']),
      ),
    );
    expect(Object.keys(scoreCells).sort()).toEqual(
      [
        'fdCls',
        'fragmented',
        'intraClassDiversity',
        'meanComponents',
        'precision',
        'recall',
      ].sort(),
    );
    expect(scoreCells.fdCls).toMatch(/^\d+\.\d\d$/);
    expect(scoreCells.precision).toMatch(/^\d\.\d{3}$/);
    await expect(page.locator('.score-table caption').textContent()).resolves.toBe(
      'FD-cls (Frechet distance in the features of a classifier trained on the dataset, not FID)',
    );
    await expect(page.locator('.score-panel').textContent()).resolves.toMatch(
      /20 samples \(classes balanced\), seed 0/,
    );
    await page.waitForFunction(
      () => {
        const img = document.querySelector<HTMLImageElement>('[data-score-figure]');
        return (img?.complete ?? false) && (img?.naturalWidth ?? 0) > 0;
      },
      null,
      { timeout: 20_000 },
    );
    // The page shows what the API has.
    const { ensembles } = await coord.api<EnsembleList>('GET', `/api/v1/runs/${run.id}/ensembles`);
    const score = await coord.api<EnsembleScoreReply>(
      'GET',
      `/api/v1/ensembles/${ensembles[0]!.id}/score`,
    );
    expect(scoreCells.fdCls).toBe(score.scores.fdCls?.toFixed(2));
    expect(score.settings.samples).toBe(20);
    // Each accepted expert's card shows the acceptance test's margins (docs/method.md §12).
    await expect
      .poll(() => page.$$eval('[data-field="acceptance"]', (els) => els.map((e) => e.textContent)))
      .toEqual([
        expect.stringMatching(
          /^x0 error \d+\.\d\d× the linear reference at mid noise, \d+\.\d\d× at high noise; specificity \d+\.\d\d$/,
        ),
        expect.stringMatching(/^x0 error \d+\.\d\d× the linear reference at mid noise/),
      ]);

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.click('[data-action="download-manifest"]'),
    ]);
    const manifest = JSON.parse(
      await readFile((await download.path())!, 'utf8'),
    ) as EnsembleManifest;
    expect(manifest.run.id).toBe(run.id);
    expect(manifest.experts).toHaveLength(2);
    // ...and the manifest records how each was accepted, with the run's bar.
    for (const e of manifest.experts) {
      expect(e).toMatchObject({
        acceptance: {
          midRatio: expect.any(Number),
          highRatio: expect.any(Number),
          reference: 'full',
          bar: { maxMidRatio: 1e6, maxHighRatio: 1e6, minSpecificity: 0 },
        },
      });
    }
    expect(manifestVerifies(manifest)).toBe(true);
    // The check can fail: a changed body no longer verifies.
    expect(manifestVerifies({ ...manifest, createdAt: new Date(0).toISOString() })).toBe(false);
    const keys = await coord.api<KeyList>('GET', '/api/v1/keys');
    expect(keys.keys.map((k) => k.publicKey)).toContain(manifest.signature.publicKey);

    await page.selectOption('select[name="routing"]', 'top-1');
    await page.fill('input[name="count"]', '4');
    await page.fill('input[name="steps"]', '4');
    await page.fill('input[name="seed"]', '3');
    await page.click('.sample-form button[type="submit"]');
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll<HTMLImageElement>('.sample img')].filter(
          (i) => i.complete && i.naturalWidth > 0,
        ).length === 4,
      null,
      { timeout: 60_000 },
    );
    const captions = await page.$$eval('.sample figcaption', (els) =>
      els.map((e) => e.textContent ?? ''),
    );
    expect(captions).toHaveLength(4);
    for (const c of captions) expect(c).toMatch(/expert [01]/);
    await expect(page.locator('.routing-totals tbody tr').count()).resolves.toBe(2);
    await page.locator('#ensemble').scrollIntoViewIfNeeded();
    await shot('ensemble-light');
    await scheme('dark');
    await shot('ensemble-dark');
    expect(foreign).toEqual([]);
    expect(pageErrors).toEqual([]);
  });

  it('run pages say how the data was split: random shards, or a monolith for K = 1', async () => {
    await scheme('light');
    const baseline = async (body: Record<string, unknown>) => {
      const r = await coord.api<Run>('POST', '/api/v1/runs', {
        datasetId: run.datasetId,
        stepsPerExpert: 10,
        model: 'tiny',
        ...body,
      });
      // Clustered (random shards, or the one cluster of a monolith) and bound to its shards.
      await until(
        `run ${r.name} to be clustered`,
        async () => {
          const now = await coord.api<Run>('GET', `/api/v1/runs/${r.id}`);
          if (now.status === 'failed') throw new Fatal(`run failed: ${now.error}`);
          return now.assignment !== null;
        },
        60_000,
        250,
      );
      await page.goto(`${coord.url}/#/runs/${r.id}`);
      await expect.poll(() => page.locator('h1').textContent()).toBe(r.name);
      return r;
    };
    const split = page.locator('[data-field="assignment"]');
    const random = await baseline({
      name: 'random shards',
      experts: 2,
      objectives: 'fm',
      assignment: 'random',
    });
    await expect.poll(() => split.getAttribute('data-assignment')).toBe('random');
    await expect(split.getAttribute('data-monolith')).resolves.toBe('false');
    await expect(split.textContent()).resolves.toMatch(/^Random shards \(the baseline\): 2 shards/);
    const monolith = await baseline({ name: 'monolith', experts: 1, objectives: 'fm' });
    await expect.poll(() => split.getAttribute('data-monolith')).toBe('true');
    await expect(split.textContent()).resolves.toBe(
      'Monolith (K = 1): one expert trained on the whole dataset',
    );
    await shot('run-monolith-light');
    // Not trained: this only looks at their pages.
    for (const r of [random, monolith]) await coord.api('POST', `/api/v1/runs/${r.id}/cancel`);
    expect(pageErrors).toEqual([]);
  });
});
