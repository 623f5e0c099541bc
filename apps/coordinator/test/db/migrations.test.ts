import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Db, DEFAULT_MIGRATIONS_DIR, openDatabase } from '../../src/db/database.js';
import { datasets, runs } from '../../src/db/schema/index.js';

function schemaOf(db: Db) {
  return db.$client
    .prepare(
      `select type, name, tbl_name as tbl, sql from sqlite_master
       where name not like 'sqlite_%' and name != '__drizzle_migrations' order by type, name`,
    )
    .all();
}

describe('migrations', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-mig-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('opens in WAL mode with foreign keys on', () => {
    const db = openDatabase({ file: path.join(dir, 'wal.sqlite') });
    expect(db.$client.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.$client.pragma('foreign_keys', { simple: true })).toBe(1);
    db.$client.close();
  });

  it('a fresh database and one upgraded from the first migration reach the same schema, keeping data', async () => {
    const journal = JSON.parse(
      await readFile(path.join(DEFAULT_MIGRATIONS_DIR, 'meta', '_journal.json'), 'utf8'),
    );
    expect(journal.entries.length).toBeGreaterThanOrEqual(2);

    const fresh = openDatabase({ file: path.join(dir, 'fresh.sqlite') });

    // The database as the first release left it: only the first migration applied.
    const firstOnly = path.join(dir, 'first-only');
    await cp(DEFAULT_MIGRATIONS_DIR, firstOnly, { recursive: true });
    await writeFile(
      path.join(firstOnly, 'meta', '_journal.json'),
      JSON.stringify({ ...journal, entries: journal.entries.slice(0, 1) }),
    );
    const oldFile = path.join(dir, 'upgraded.sqlite');
    const old = openDatabase({ file: oldFile, migrationsDir: firstOnly });
    const oldTables = (schemaOf(old) as { name: string }[]).map((r) => r.name);
    expect(oldTables).toContain('datasets');
    expect(oldTables).not.toContain('leases');
    old
      .insert(datasets)
      .values({
        id: 'ds_keepme000000',
        name: 'kept',
        source: { kind: 'builtin', name: 'mnist' },
        count: 1,
        height: 28,
        width: 28,
        channels: 1,
        classNames: ['0'],
        imagesKey: 'datasets/ds_keepme000000/images.bin',
        bytes: 1,
        sha256: 'a'.repeat(64),
        featureKind: 'pca',
        featureDim: 2,
        featuresKey: 'datasets/ds_keepme000000/features.npy',
        importMs: 1,
      })
      .run();
    old.$client.close();

    const upgraded = openDatabase({ file: oldFile });
    expect(schemaOf(upgraded)).toEqual(schemaOf(fresh));
    expect(
      upgraded
        .select()
        .from(datasets)
        .all()
        .map((d) => d.name),
    ).toEqual(['kept']);
    expect(upgraded.select().from(runs).all()).toEqual([]);
    // Applying migrations again is a no-op.
    upgraded.$client.close();
    const again = openDatabase({ file: oldFile });
    expect(schemaOf(again)).toEqual(schemaOf(fresh));
    again.$client.close();
    fresh.$client.close();
  });

  it('the committed migrations match the drizzle schema (drizzle-kit finds nothing to generate)', async () => {
    const out = path.join(dir, 'check');
    await cp(DEFAULT_MIGRATIONS_DIR, out, { recursive: true });
    const pkg = path.resolve(import.meta.dirname, '../..');
    const stdout = execFileSync(
      'npx',
      [
        'drizzle-kit',
        'generate',
        '--dialect',
        'sqlite',
        '--schema',
        './src/db/schema/index.ts',
        '--casing',
        'snake_case',
        '--out',
        path.relative(pkg, out),
      ],
      { cwd: pkg, encoding: 'utf8' },
    );
    expect(stdout).toContain('No schema changes');
    expect((await readdir(out)).sort()).toEqual((await readdir(DEFAULT_MIGRATIONS_DIR)).sort());
  });

  it('fails clearly when the migrations folder is missing', () => {
    expect(() =>
      openDatabase({ file: path.join(dir, 'x.sqlite'), migrationsDir: path.join(dir, 'nowhere') }),
    ).toThrow(/migrations not found at .*nowhere.*ARCHIPELAGO_MIGRATIONS_DIR/);
  });
});
