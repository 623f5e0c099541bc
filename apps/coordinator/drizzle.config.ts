import { defineConfig } from 'drizzle-kit';

// Migrations are generated from the schema, committed, and never hand-edited.
export default defineConfig({
  dialect: 'sqlite',
  schema: './src/db/schema/index.ts',
  out: '../../migrations',
  casing: 'snake_case',
});
