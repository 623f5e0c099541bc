#!/usr/bin/env node
/**
 * Rewrites citations of the project's documents by bare name into paths a reader can follow, in
 * place: the method, architecture and machine-notes pages become `docs/<name>` (e.g.
 * `docs/method.md`), and the manifest and shard formats, which moved into docs/ under new names,
 * become `docs/manifest-format.md` and `docs/shard-format.md` whatever path they were cited with.
 * Section numbers and quoted headings after a name are left as they are.
 *
 * Idempotent: a name already preceded by a path (`docs/…`, `../…`) is not touched, so running it
 * twice changes nothing the second time and never produces `docs/docs/`. Every occurrence in the
 * file is rewritten, in comments and strings alike (test names cite documents too); each changed
 * line is printed, then the count.
 *
 * Usage: `node scripts/rewrite-doc-citations.mjs [--dry-run] [FILE|DIR ...]`. Without paths: the
 * git-tracked (and new, not ignored) `.ts`, `.mjs` and `.js` files under apps/, packages/ and
 * scripts/ (node_modules and dist skipped). `--dry-run` prints what would change and writes nothing. Node 20, no
 * dependencies. Check the result with `node scripts/check-doc-citations.mjs`.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const EXTENSIONS = new Set(['.ts', '.mjs', '.js']);
const SKIPPED_DIRS = new Set(['node_modules', 'dist', '.git', '.turbo']);
const DEFAULT_DIRS = ['apps', 'packages', 'scripts'];

/** Bare names of pages that live in docs/ under the same name. */
const SAME_NAME = /(?<![\w.:/\\-])(method|architecture|machine-notes)\.md(?![\w-])/g;

/** Pages that moved into docs/ under a new name, cited bare or with any path. */
const MOVED = [
  [/(?<![\w.:/\\-])(?:\.{1,2}\/|[\w.-]+\/)*MANIFEST\.md(?![\w-])/g, 'docs/manifest-format.md'],
  [/(?<![\w.:/\\-])(?:\.{1,2}\/|[\w.-]+\/)*SHARD-FORMAT\.md(?![\w-])/g, 'docs/shard-format.md'],
];

/** `text` with every bare citation rewritten, and how many were. */
export function rewriteCitations(text) {
  let count = 0;
  let out = text.replace(SAME_NAME, (_match, name) => {
    count++;
    return `docs/${name}.md`;
  });
  for (const [pattern, replacement] of MOVED) {
    out = out.replace(pattern, (match) => {
      if (match === replacement) return match;
      count++;
      return replacement;
    });
  }
  return { text: out, count };
}

function parseArgs(argv) {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const options = { root: path.resolve(here, '..'), dryRun: false, paths: [] };
  for (const arg of argv) {
    if (arg === '--dry-run') options.dryRun = true;
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write(
        'usage: node scripts/rewrite-doc-citations.mjs [--dry-run] [FILE|DIR ...]\n',
      );
      process.exit(0);
    } else if (arg.startsWith('--')) {
      process.stderr.write(`unknown option ${JSON.stringify(arg)}; valid: --dry-run\n`);
      process.exit(2);
    } else options.paths.push(path.resolve(arg));
  }
  return options;
}

const wanted = (file) =>
  EXTENSIONS.has(path.extname(file)) &&
  !file.split(path.sep).some((part) => SKIPPED_DIRS.has(part));

function expand(paths) {
  const files = [];
  const walk = (p) => {
    if (statSync(p).isDirectory()) {
      for (const entry of readdirSync(p)) if (!SKIPPED_DIRS.has(entry)) walk(path.join(p, entry));
    } else if (wanted(p)) files.push(p);
  };
  for (const p of paths) walk(p);
  return files;
}

function trackedFiles(root) {
  const out = execFileSync(
    'git',
    ['ls-files', '-z', '--cached', '--others', '--exclude-standard', '--', ...DEFAULT_DIRS],
    {
      cwd: root,
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    },
  );
  return out
    .split('\0')
    .filter(Boolean)
    .map((rel) => path.join(root, rel))
    .filter((file) => wanted(file) && statSync(file, { throwIfNoEntry: false })?.isFile());
}

const options = parseArgs(process.argv.slice(2));
const files = options.paths.length > 0 ? expand(options.paths) : trackedFiles(options.root);
let changed = 0;
let changedFiles = 0;
for (const file of files) {
  const before = readFileSync(file, 'utf8');
  const { text, count } = rewriteCitations(before);
  if (count === 0) continue;
  changed += count;
  changedFiles++;
  const shown = path.relative(process.cwd(), file) || file;
  const oldLines = before.split('\n');
  text.split('\n').forEach((line, i) => {
    if (line !== oldLines[i]) process.stdout.write(`${shown}:${i + 1}: ${line.trim()}\n`);
  });
  if (!options.dryRun) writeFileSync(file, text);
}
process.stdout.write(
  `doc citations: ${options.dryRun ? 'would rewrite' : 'rewrote'} ${changed} in ${changedFiles} file(s)\n`,
);
