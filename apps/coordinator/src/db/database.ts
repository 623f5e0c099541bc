import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Sqlite from 'better-sqlite3';
import { type BetterSQLite3Database, drizzle } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import * as schema from './schema/index.js';

export type Db = BetterSQLite3Database<typeof schema> & { $client: Sqlite.Database };

/** The handle a `db.transaction` callback gets. */
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];

/** The repository's `migrations/` folder (same depth from `src/db` and `dist/db`). */
export const DEFAULT_MIGRATIONS_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../../../migrations',
);

export interface OpenDatabaseOptions {
  /** SQLite file path, or `:memory:`. */
  file: string;
  migrationsDir?: string;
  /** Apply pending migrations (default true). */
  migrate?: boolean;
}

/**
 * Open the coordinator's SQLite database in WAL mode and bring its schema up to date with the
 * committed drizzle-kit migrations.
 */
export function openDatabase(options: OpenDatabaseOptions): Db {
  if (options.file !== ':memory:') mkdirSync(path.dirname(options.file), { recursive: true });
  const client = new Sqlite(options.file);
  // WAL lets the CLI and the server share one database; NORMAL sync is durable in WAL mode
  // except for the last transactions on power loss, which the reconciler tolerates.
  client.pragma('journal_mode = WAL');
  client.pragma('synchronous = NORMAL');
  client.pragma('foreign_keys = ON');
  client.pragma('busy_timeout = 5000');
  const db = drizzle({ client, schema }) as Db;
  if (options.migrate !== false) {
    const migrationsFolder = options.migrationsDir ?? DEFAULT_MIGRATIONS_DIR;
    if (!existsSync(path.join(migrationsFolder, 'meta', '_journal.json'))) {
      client.close();
      throw new Error(
        `migrations not found at ${migrationsFolder} (expected meta/_journal.json); set ARCHIPELAGO_MIGRATIONS_DIR`,
      );
    }
    migrate(db, { migrationsFolder });
  }
  return db;
}

export { schema };
