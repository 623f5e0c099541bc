#!/usr/bin/env node
/**
 * Checks that every citation of a Markdown document in the code and the docs names a file a reader
 * can find, and, where it names a section, a section that exists.
 *
 * Scanned: the git-tracked (and new, not ignored) `.ts`, `.mjs`, `.js` and `.md` files under
 * `apps/`, `packages/`, `scripts/` and `docs/`, and the top-level README.md (node_modules and dist
 * skipped). A citation is any name ending in `.md`: `docs/method.md §4`, `docs/method.md section 6`,
 * `docs/architecture.md "Security model"`, a Markdown link `[format](../docs/manifest-format.md)`, a
 * relative path such as `../README.md`. Resolved:
 *
 * - the name, as a path relative to the citing file's folder, or relative to the repository root,
 *   must be an existing file. So a bare name resolves only where the document lies next to the
 *   citing file (a link from one page of docs/ to another); in source code write the path from the
 *   root (`docs/method.md`), which a reader can follow;
 * - `§N` or `section N` right after the name (the same line or the next comment line) must be a
 *   heading `## N.` of the cited document;
 * - a quoted title right after the name (`"Ensemble manifest"`) must be (part of) one of its
 *   headings.
 *
 * URLs (`https://…/README.md`) are not citations. Exit status 1, with one `file:line: …` line per
 * problem, when anything does not resolve; the last line is always the summary, e.g.
 * `doc citations: 71 checked, 0 unresolved`.
 *
 * Usage: `node scripts/check-doc-citations.mjs [--root DIR]` (default: this repository). Node 20,
 * no dependencies.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SCANNED_DIRS = ['apps', 'packages', 'scripts', 'docs'];
const SCANNED_FILES = ['README.md'];
const EXTENSIONS = new Set(['.ts', '.mjs', '.js', '.md']);
const SKIPPED_DIRS = new Set(['node_modules', 'dist', '.git', '.turbo']);
/** Documents that moved into docs/ under a new name (old base name -> new, without `.md`). */
const MOVED = new Map([
  ['MANIFEST', 'manifest-format'],
  ['SHARD-FORMAT', 'shard-format'],
]);

/**
 * A document name: path characters ending in `.md`, not preceded by a path character or `:` (so a
 * URL's tail or the middle of a longer name never matches on its own).
 */
const NAME = /(?<![\w.:/\\-])((?:\.{1,2}\/|[\w.-]+\/)*[\w.-]*[\w-]\.md)(?![\w-])/g;

/**
 * What may follow a name and still belong to the citation: a closing backtick or parenthesis, a
 * comma, then blanks, possibly across one line break with its comment leader (` * `, `// `, `# `).
 */
const GAP = String.raw`[\x60)]?,?[ \t]*(?:\r?\n[ \t]*(?:\*(?!\/)|\/\/|#+)?[ \t]*)?`;
const SECTION = new RegExp(String.raw`^${GAP}(?:§[ \t]*|section[ \t]+)(\d+)`, 'i');
const TITLE = new RegExp(String.raw`^${GAP}"([^"\n]{2,80})"`);

function parseArgs(argv) {
  const here = path.dirname(fileURLToPath(import.meta.url));
  let root = path.resolve(here, '..');
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--root' && argv[i + 1]) root = path.resolve(argv[++i]);
    else if (argv[i] === '--help' || argv[i] === '-h') {
      process.stdout.write('usage: node scripts/check-doc-citations.mjs [--root DIR]\n');
      process.exit(0);
    } else {
      process.stderr.write(`unknown argument ${JSON.stringify(argv[i])}; valid: --root DIR\n`);
      process.exit(2);
    }
  }
  return { root };
}

const wanted = (rel) =>
  EXTENSIONS.has(path.extname(rel)) &&
  !rel.split('/').some((part) => SKIPPED_DIRS.has(part)) &&
  (SCANNED_FILES.includes(rel) || SCANNED_DIRS.some((d) => rel.startsWith(`${d}/`)));

/** Tracked files plus new ones git does not ignore; a plain walk where there is no git. */
function listFiles(root) {
  try {
    const out = execFileSync(
      'git',
      [
        'ls-files',
        '-z',
        '--cached',
        '--others',
        '--exclude-standard',
        '--',
        ...SCANNED_DIRS,
        ...SCANNED_FILES,
      ],
      { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 64 << 20 },
    );
    const files = [...new Set(out.split('\0').filter(Boolean))];
    return files.filter((rel) => wanted(rel) && existsSync(path.join(root, rel))).sort();
  } catch {
    const files = [];
    const walk = (dir) => {
      for (const entry of readdirSync(path.join(root, dir), { withFileTypes: true })) {
        const rel = dir ? `${dir}/${entry.name}` : entry.name;
        if (entry.isDirectory()) {
          if (!SKIPPED_DIRS.has(entry.name)) walk(rel);
        } else if (wanted(rel)) files.push(rel);
      }
    };
    for (const d of SCANNED_DIRS) if (existsSync(path.join(root, d))) walk(d);
    for (const f of SCANNED_FILES) if (existsSync(path.join(root, f))) files.push(f);
    return files.sort();
  }
}

const isFile = (p) => {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
};

/** The cited file's absolute path, or null: relative to the citing file, then to the root. */
function resolveName(root, citingRel, name) {
  const candidates = [path.resolve(root, path.dirname(citingRel), name), path.resolve(root, name)];
  return candidates.find((p) => p.startsWith(root + path.sep) && isFile(p)) ?? null;
}

const headingCache = new Map();

/** `{ numbers, titles }` of a Markdown file's headings: `## 4. Title` gives number 4. */
function headingsOf(file) {
  let h = headingCache.get(file);
  if (!h) {
    h = { numbers: new Set(), titles: [] };
    let fenced = false;
    for (const line of readFileSync(file, 'utf8').split(/\r?\n/)) {
      if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
      if (fenced) continue;
      const m = /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line);
      if (!m) continue;
      h.titles.push(m[2].toLowerCase());
      const numbered = /^(\d+)\.(?:\s|$)/.exec(m[2]);
      if (m[1] === '##' && numbered) h.numbers.add(Number(numbered[1]));
    }
    headingCache.set(file, h);
  }
  return h;
}

function lineStarts(text) {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === '\n') starts.push(i + 1);
  return starts;
}

function lineOf(starts, offset) {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid] <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo + 1;
}

function check(root) {
  const problems = [];
  let checked = 0;
  for (const rel of listFiles(root)) {
    const text = readFileSync(path.join(root, rel), 'utf8');
    const starts = lineStarts(text);
    for (const m of text.matchAll(NAME)) {
      const name = m[1];
      const at = `${rel}:${lineOf(starts, m.index)}`;
      checked++;
      const target = resolveName(root, rel, name);
      if (!target) {
        const base = path.basename(name, '.md');
        const doc = `docs/${MOVED.get(base) ?? base}.md`;
        const hint = isFile(path.join(root, doc)) ? ` (write ${doc})` : '';
        problems.push(`${at}: unresolved "${name}": no such file${hint}`);
        continue;
      }
      if (!target.endsWith('.md')) continue;
      const after = text.slice(m.index + name.length, m.index + name.length + 200);
      const section = SECTION.exec(after);
      const title = TITLE.exec(after);
      const shown = path.relative(root, target).split(path.sep).join('/');
      if (section) {
        const n = Number(section[1]);
        if (!headingsOf(target).numbers.has(n))
          problems.push(`${at}: unresolved "${name} §${n}": ${shown} has no heading "## ${n}."`);
      } else if (title) {
        const wantedTitle = title[1].toLowerCase();
        if (!headingsOf(target).titles.some((t) => t.includes(wantedTitle)))
          problems.push(`${at}: unresolved "${name} "${title[1]}"": ${shown} has no such heading`);
      }
    }
  }
  return { checked, problems };
}

const { root } = parseArgs(process.argv.slice(2));
const { checked, problems } = check(root);
for (const p of problems) process.stdout.write(`${p}\n`);
process.stdout.write(`doc citations: ${checked} checked, ${problems.length} unresolved\n`);
process.exit(problems.length > 0 ? 1 : 0);
