import type { RunEvent } from '@archipelago/protocol';
import { and, desc, eq, gt, lt, type SQL } from 'drizzle-orm';
import type { Db } from '../db/database.js';
import { type EventRow, events } from '../db/schema/index.js';

/**
 * An event as the public reads and the live stream show it. Databases from before volunteers'
 * addresses were kept out of the log still hold them in `worker.connected` events (`remote`);
 * they are never shown.
 */
export const toRunEvent = (row: EventRow): RunEvent => {
  const { remote: _address, ...data } = (row.data ?? {}) as Record<string, unknown>;
  return {
    id: row.id,
    at: row.at.toISOString(),
    type: row.type,
    runId: row.runId,
    expertId: row.expertId,
    workerId: row.workerId,
    data: row.data ? data : null,
  };
};

export interface EventFilter {
  runId?: string;
  limit?: number;
  /** Only events with a smaller id (paging back). */
  before?: number;
}

/** The event log newest first, optionally of one run. */
export function listEvents(db: Db, filter: EventFilter = {}): RunEvent[] {
  const where: SQL[] = [];
  if (filter.runId) where.push(eq(events.runId, filter.runId));
  if (filter.before !== undefined) where.push(lt(events.id, filter.before));
  return db
    .select()
    .from(events)
    .where(and(...where))
    .orderBy(desc(events.id))
    .limit(filter.limit ?? 100)
    .all()
    .map(toRunEvent);
}

/** Events written after `afterId`, oldest first (what a live stream has not sent yet). */
export function eventsAfter(db: Db, afterId: number, limit = 500): RunEvent[] {
  return db
    .select()
    .from(events)
    .where(gt(events.id, afterId))
    .orderBy(events.id)
    .limit(limit)
    .all()
    .map(toRunEvent);
}

/** The id of the newest event (0 for an empty log). */
export function lastEventId(db: Db): number {
  return db.select({ id: events.id }).from(events).orderBy(desc(events.id)).limit(1).get()?.id ?? 0;
}
