/**
 * A database with one dataset and a run of `k` experts created through the runs service (no
 * clustering yet: the run is `clustering`, its experts `pending`), and a dispatcher that records
 * what it was handed.
 */
import type { Run } from '@archipelago/protocol';
import { eq, sql } from 'drizzle-orm';
import { type Db, openDatabase } from '../../src/db/database.js';
import { datasets, events, experts, jobs, runs } from '../../src/db/schema/index.js';
import { newId } from '../../src/ids.js';
import { createRun } from '../../src/services/runs.js';

export interface LifecycleFixture {
  db: Db;
  run: Run;
  /** Job ids handed to the dispatcher, in order. */
  dispatched: string[];
  runRow(): typeof runs.$inferSelect;
  expertRow(id: string): typeof experts.$inferSelect;
  eventTypes(): string[];
  eventCount(): number;
  jobRows(): (typeof jobs.$inferSelect)[];
  close(): void;
}

export function lifecycleFixture(k = 2): LifecycleFixture {
  const db = openDatabase({ file: ':memory:' });
  const datasetId = newId('dataset');
  db.insert(datasets)
    .values({
      id: datasetId,
      name: 'tiny',
      source: { kind: 'builtin', name: 'mnist' },
      count: 10,
      height: 8,
      width: 8,
      channels: 1,
      classNames: [],
      imagesKey: `datasets/${datasetId}/images.bin`,
      bytes: 640,
      sha256: '0'.repeat(64),
      featureKind: 'pca',
      featureDim: 2,
      featuresKey: `datasets/${datasetId}/features.npy`,
      importMs: 1,
    })
    .run();
  const dispatched: string[] = [];
  const run = createRun(
    { db, jobs: { dispatch: (id) => dispatched.push(id) } },
    { datasetId, experts: k, stepsPerExpert: 10 },
  );
  return {
    db,
    run,
    dispatched,
    runRow: () => db.select().from(runs).where(eq(runs.id, run.id)).get()!,
    expertRow: (id) => db.select().from(experts).where(eq(experts.id, id)).get()!,
    eventTypes: () =>
      db
        .select({ type: events.type })
        .from(events)
        .orderBy(events.id)
        .all()
        .map((e) => e.type),
    eventCount: () => db.select({ n: sql<number>`count(*)` }).from(events).get()!.n,
    jobRows: () => db.select().from(jobs).orderBy(jobs.createdAt).all(),
    close: () => db.$client.close(),
  };
}
