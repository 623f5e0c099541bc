/**
 * WAL checkpoints on their own thread (src/db/checkpointer.ts), on a real SQLite file: the
 * coordinator's connection never checkpoints on commit, the thread copies the log into the
 * database (another connection reads every committed row from the database file alone once it
 * has), the log file stays bounded however much is written, and a thread that cannot run gives
 * the connection its automatic checkpoints back.
 */
import { copyFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Sqlite from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { type Checkpointer, startCheckpointer } from '../../src/db/checkpointer.js';

const dirs: string[] = [];
const open: Sqlite.Database[] = [];
let checkpointer: Checkpointer | undefined;

afterEach(async () => {
  await checkpointer?.stop();
  checkpointer = undefined;
  for (const db of open.splice(0)) if (db.open) db.close();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function database() {
  const dir = await mkdtemp(path.join(tmpdir(), 'arch-ckpt-'));
  dirs.push(dir);
  const file = path.join(dir, 'db.sqlite');
  const db = new Sqlite(file);
  open.push(db);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec('create table t (id integer primary key, v blob)');
  return { db, file };
}

/** Commit `n` rows of 3 KiB, one transaction each (one log page per row). */
function write(db: Sqlite.Database, n: number, from: number) {
  const insert = db.prepare('insert into t (id, v) values (?, randomblob(3000))');
  for (let i = 0; i < n; i++) insert.run(from + i);
}

/**
 * A checkpoint that began after the writes before this call ended (a millisecond later at least)
 * copied the whole log. Judged by when it began, not by counting reports from now: reports of
 * checkpoints that ran during the writes (the thread runs beside them) can still be on their way,
 * and one of those may have copied all of the log as it then was while the rest was being
 * written; a copy of the file taken on its word raced the checkpoint still copying ("database
 * disk image is malformed", seen in a fresh-clone CI at load 8).
 */
async function fullCheckpoint(cp: Checkpointer, what: string) {
  const since = Date.now();
  await until(what, () => {
    const last = cp.stats.last;
    return last !== null && last.at > since && last.checkpointed === last.log;
  });
}

async function until(what: string, ok: () => boolean, ms = 20_000) {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('WAL checkpoints off the event loop', () => {
  it('the connection stops checkpointing on commit and the thread copies the whole log instead', async () => {
    const { db, file } = await database();
    checkpointer = startCheckpointer(db, file, { everyMs: 50 });
    await checkpointer.ready;
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(0);
    write(db, 1500, 0);
    // Past SQLite's 1,000-page threshold: the connection itself checkpointed nothing.
    const cp = checkpointer;
    await fullCheckpoint(cp, 'a checkpoint of the whole log');
    expect(cp.stats.checkpoints).toBeGreaterThan(0);
    expect(cp.stats.copied).toBeGreaterThanOrEqual(1500);
    // The thread's connection is still open: the log was not checkpointed by a last close.
    expect(statSync(`${file}-wal`).size).toBeGreaterThan(1500 * 3000);
    // What was copied is in the database file: a copy of the file without its log has every row.
    const copy = path.join(path.dirname(file), 'copy.sqlite');
    copyFileSync(file, copy);
    const reader = new Sqlite(copy, { readonly: true });
    open.push(reader);
    expect(reader.prepare('select count(*) n from t').get()).toEqual({ n: 1500 });
  });

  it('keeps the log file bounded while much more than it is written', async () => {
    const { db, file } = await database();
    checkpointer = startCheckpointer(db, file, { everyMs: 200 });
    await checkpointer.ready;
    const wal = `${file}-wal`;
    let biggest = 0;
    const cp = checkpointer;
    // 10 rounds of 500 pages, each waiting for its checkpoint: 5,000 pages committed in all.
    for (let round = 0; round < 10; round++) {
      write(db, 500, round * 500);
      biggest = Math.max(biggest, statSync(wal).size);
      await fullCheckpoint(cp, `the checkpoint of round ${round}`);
    }
    expect(db.prepare('select count(*) n from t').get()).toEqual({ n: 5000 });
    // The log restarts from its beginning after a full checkpoint: it holds about one round's
    // frames (each commit logs its leaf, the tree above it and the header page), never all ten
    // rounds' (what it would hold if nothing restarted it).
    const frameBytes = 4096 + 24;
    const roundBytes = (cp.stats.copied / 10) * frameBytes;
    expect(biggest).toBeGreaterThan(0.5 * roundBytes);
    expect(biggest).toBeLessThan(3 * roundBytes);
    expect(cp.stats.copied).toBeGreaterThanOrEqual(5000);
  });

  it('gives the connection its automatic checkpoints back when the thread cannot open the file', async () => {
    const { db, file } = await database();
    const failures: Error[] = [];
    checkpointer = startCheckpointer(db, `${file}.missing`, {
      everyMs: 20,
      onFailure: (err) => failures.push(err),
    });
    await expect(checkpointer.ready).rejects.toThrow(/cannot open .*missing/);
    await until('the failure reported', () => failures.length > 0);
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
  });
});
