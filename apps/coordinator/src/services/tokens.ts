import { createHash, randomBytes } from 'node:crypto';
import { and, desc, eq, inArray } from 'drizzle-orm';
import type { Db } from '../db/database.js';
import {
  type LeaseRow,
  leases,
  type WorkerTokenRow,
  workers,
  workerTokens,
} from '../db/schema/index.js';
import { notFound } from '../errors.js';
import { newId } from '../ids.js';
import { EVENTS, recordEvent } from '../lifecycle/events.js';
import { endLease } from './leases.js';

export const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');

export interface TokenView {
  id: string;
  name: string;
  prefix: string;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export const toTokenView = (row: WorkerTokenRow): TokenView => ({
  id: row.id,
  name: row.name,
  prefix: row.prefix,
  createdAt: row.createdAt.toISOString(),
  lastUsedAt: row.lastUsedAt?.toISOString() ?? null,
  revokedAt: row.revokedAt?.toISOString() ?? null,
});

/** A new worker token. The secret is returned once; only its sha256 is stored. */
export function createToken(db: Db, name: string): TokenView & { token: string } {
  const token = `wt_${randomBytes(24).toString('base64url')}`;
  const row = db.transaction((tx) => {
    const inserted = tx
      .insert(workerTokens)
      .values({ id: newId('token'), name, tokenHash: hashToken(token), prefix: token.slice(0, 10) })
      .returning()
      .get();
    recordEvent(tx, EVENTS.tokenCreated, { data: { tokenId: inserted.id, name } });
    return inserted;
  });
  return { ...toTokenView(row), token };
}

export function listTokens(db: Db): TokenView[] {
  return db
    .select()
    .from(workerTokens)
    .orderBy(desc(workerTokens.createdAt))
    .all()
    .map(toTokenView);
}

/**
 * Revoke a token (idempotent) and, in the same transaction, end every active lease of its workers
 * (their experts return to the pool; what a lease allowed ends with it). Live connections are
 * closed by the worker hub: at once when the server revokes, within a moment when another
 * process (the CLI) does (WorkerHub polls for it).
 */
export function revokeToken(db: Db, id: string): TokenView & { endedLeases: LeaseRow[] } {
  return db.transaction((tx) => {
    const row = tx.select().from(workerTokens).where(eq(workerTokens.id, id)).get();
    if (!row) throw notFound('token', id);
    const active = tx
      .select()
      .from(leases)
      .where(
        and(
          eq(leases.status, 'active'),
          inArray(
            leases.workerId,
            tx.select({ id: workers.id }).from(workers).where(eq(workers.tokenId, id)),
          ),
        ),
      )
      .all();
    for (const lease of active) endLease(tx, lease, 'revoked', 'worker token revoked');
    if (row.revokedAt) return { ...toTokenView(row), endedLeases: active };
    const updated = tx
      .update(workerTokens)
      .set({ revokedAt: new Date() })
      .where(eq(workerTokens.id, id))
      .returning()
      .get();
    recordEvent(tx, EVENTS.tokenRevoked, { data: { tokenId: id, name: row.name } });
    return { ...toTokenView(updated), endedLeases: active };
  });
}

/** The token row for a presented secret, or why it is refused. */
export function checkToken(
  db: Db,
  token: string,
): { ok: true; row: WorkerTokenRow } | { ok: false; code: 'unauthorized' | 'token_revoked' } {
  const row = db
    .select()
    .from(workerTokens)
    .where(eq(workerTokens.tokenHash, hashToken(token)))
    .get();
  if (!row) return { ok: false, code: 'unauthorized' };
  if (row.revokedAt) return { ok: false, code: 'token_revoked' };
  return { ok: true, row };
}
