#!/usr/bin/env node
/**
 * Packs the volunteer worker into one npm tarball that installs anywhere with
 * `npm install -g <tarball>`, no monorepo needed (issue 15, point 5).
 *
 * The worker's workspace dependencies (@archipelago/protocol, models, diffusion, data, random)
 * are not on any registry, so they travel inside the tarball: each one's built `dist/` (the
 * JavaScript and declarations of its current sources; no source maps, no tests) and a trimmed
 * package.json go into the staged worker's `node_modules/@archipelago/`, listed in
 * `bundleDependencies`. Their registry dependencies (tfjs, webgpu, ws, sharp, ...) move to the
 * worker's own manifest, at the versions the workspace pins, and come from the npm registry at
 * install (npm would take a bundled package's dependencies to be inside the bundle and fetch
 * none of them); tfjs-node and tfjs-node-gpu stay optional (their installers download
 * libtensorflow, and npm leaves them out when that fails).
 *
 *   node scripts/pack-worker.mjs [--skip-build] [--out DIR]
 *
 * Builds the worker and its dependencies (turbo, cached) unless --skip-build, stages the
 * package in a temporary directory, runs `npm pack` there, checks the tarball (no tests, no
 * sources or maps, no monorepo paths, every bundled package present) and writes it to DIR
 * (default out/worker/). The last line of stdout is the tarball's path.
 */
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..');
const WORKER = '@archipelago/worker';

/**
 * Registry dependencies of the bundled packages that the worker never loads, left out of its
 * install (the test in apps/worker/test/install.test.ts trains a lease without them).
 */
const NOT_INSTALLED = {
  // @archipelago/data's built-in dataset, 41 MB unpacked, read only by the coordinator's import.
  mnist: 'the built-in MNIST of dataset imports',
};

function fail(message) {
  process.stderr.write(`pack-worker: ${message}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const options = { build: true, out: path.join(ROOT, 'out', 'worker') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--skip-build') options.build = false;
    else if (a === '--out' && argv[i + 1]) options.out = path.resolve(argv[++i]);
    else fail(`unknown argument ${a} (usage: pack-worker.mjs [--skip-build] [--out DIR])`);
  }
  return options;
}

function run(command, args, cwd, env = process.env) {
  const r = spawnSync(command, args, {
    cwd,
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    shell: process.platform === 'win32',
  });
  if (r.error) fail(`${command} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) {
    fail(`${command} ${args.join(' ')} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  }
  return r.stdout;
}

const readJson = (file) => JSON.parse(readFileSync(file, 'utf8'));

/** The workspace's packages, by name: their directory and manifest. */
function workspacePackages() {
  const packages = new Map();
  for (const group of ['packages', 'apps']) {
    for (const entry of readdirSync(path.join(ROOT, group))) {
      const dir = path.join(ROOT, group, entry);
      const file = path.join(dir, 'package.json');
      if (!existsSync(file)) continue;
      const manifest = readJson(file);
      packages.set(manifest.name, { dir, manifest });
    }
  }
  return packages;
}

/** The workspace packages the worker needs at run time (its dependencies, transitively). */
function bundledClosure(packages) {
  const seen = new Set();
  const queue = [WORKER];
  while (queue.length > 0) {
    const name = queue.shift();
    const { manifest } = packages.get(name);
    for (const dep of Object.keys({ ...manifest.dependencies, ...manifest.optionalDependencies })) {
      if (packages.has(dep) && !seen.has(dep)) {
        seen.add(dep);
        queue.push(dep);
      }
    }
  }
  return [...seen].sort();
}

/** A registry version spec: an exact version or a range, nothing that names a local path. */
function checkSpec(owner, dep, spec) {
  if (/^(workspace|file|link|portal|git|git\+\w+|github):/.test(spec) || spec.includes('/')) {
    fail(`${owner} depends on ${dep}@${spec}, which points outside the npm registry`);
  }
}

/** Merges the third-party dependencies of the worker and its bundled packages. */
function thirdPartyDependencies(packages, names, field) {
  const merged = {};
  const from = {};
  for (const name of names) {
    for (const [dep, spec] of Object.entries(packages.get(name).manifest[field] ?? {})) {
      if (packages.has(dep) || dep in NOT_INSTALLED) continue;
      checkSpec(name, dep, spec);
      if (merged[dep] !== undefined && merged[dep] !== spec) {
        fail(`${dep} is ${merged[dep]} in ${from[dep]} but ${spec} in ${name}: pin one version`);
      }
      merged[dep] = spec;
      from[dep] = name;
    }
  }
  return Object.fromEntries(Object.entries(merged).sort(([a], [b]) => a.localeCompare(b)));
}

/**
 * Copies a package's built files: of `dist/`, the JavaScript and declarations whose source in
 * `src/` still exists (a file left in dist by a deleted source is not shipped), no maps; other
 * `files` entries as they are. Returns the number of files copied.
 */
function copyBuilt(srcDir, destDir, manifest) {
  let copied = 0;
  for (const entry of manifest.files ?? ['dist']) {
    const from = path.join(srcDir, entry);
    if (!existsSync(from)) fail(`${manifest.name}: ${entry} is missing (build it first)`);
    if (entry !== 'dist') {
      copied += copyTree(from, path.join(destDir, entry), () => true);
      continue;
    }
    copied += copyTree(from, path.join(destDir, 'dist'), (relative) => {
      const match = /^(.*)\.(js|d\.ts)$/.exec(relative);
      if (!match) return false;
      return ['.ts', '.mts', '.tsx'].some((ext) =>
        existsSync(path.join(srcDir, 'src', match[1] + ext)),
      );
    });
  }
  return copied;
}

function copyTree(from, to, keep, relative = '') {
  const stat = statSync(from);
  if (!stat.isDirectory()) {
    if (!keep(relative)) return 0;
    mkdirSync(path.dirname(to), { recursive: true });
    copyFileSync(from, to);
    return 1;
  }
  let copied = 0;
  for (const entry of readdirSync(from)) {
    copied += copyTree(
      path.join(from, entry),
      path.join(to, entry),
      keep,
      relative ? `${relative}/${entry}` : entry,
    );
  }
  return copied;
}

/** The fields of a manifest that an installed package uses; no scripts, no devDependencies. */
function installedManifest(manifest, extra = {}) {
  const keep = [
    'name',
    'version',
    'description',
    'license',
    'type',
    'bin',
    'main',
    'types',
    'exports',
    'files',
    'engines',
  ];
  const out = {};
  for (const key of keep) if (manifest[key] !== undefined) out[key] = manifest[key];
  for (const field of ['dependencies', 'optionalDependencies']) {
    if (manifest[field] && Object.keys(manifest[field]).length > 0) out[field] = manifest[field];
  }
  return { ...out, ...extra };
}

/** Checks the packed tarball's file list and contents; returns a summary. */
function verifyTarball(tarball, bundled, workDir) {
  const unpacked = path.join(workDir, 'unpacked');
  mkdirSync(unpacked, { recursive: true });
  run('tar', ['-xzf', tarball, '-C', unpacked], workDir);
  const files = [];
  const walk = (dir, rel) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const r = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) walk(path.join(dir, entry.name), r);
      else files.push(r);
    }
  };
  walk(unpacked, '');
  const problems = [];
  for (const f of files) {
    if (!f.startsWith('package/')) problems.push(`${f}: outside package/`);
    if (/(^|\/)(test|tests|__tests__|src)\//.test(f) || /\.(test|spec)\.[cm]?js$/.test(f)) {
      problems.push(`${f}: a test or a source`);
    }
    if (
      /\.map$|\.tsbuildinfo$|(^|\/)tsconfig[^/]*\.json$/.test(f) ||
      (/\.ts$/.test(f) && !/\.d\.ts$/.test(f))
    ) {
      problems.push(`${f}: a source, a map or a build file`);
    }
    const modules = /^package\/node_modules\/(@[^/]+\/[^/]+|[^/]+)\//.exec(f);
    if (modules && !bundled.includes(modules[1])) problems.push(`${f}: an unbundled package`);
    if (/\.(js|json|d\.ts|md)$/.test(f)) {
      const text = readFileSync(path.join(unpacked, f), 'utf8');
      if (text.includes(ROOT)) problems.push(`${f}: names the monorepo's path ${ROOT}`);
      if (/"(workspace|file|link):/.test(text)) problems.push(`${f}: a local dependency spec`);
    }
  }
  for (const name of bundled) {
    const manifestPath = `package/node_modules/${name}/package.json`;
    if (!files.includes(manifestPath)) {
      problems.push(`${name} is not bundled`);
      continue;
    }
    const inner = readJson(path.join(unpacked, manifestPath));
    for (const field of ['dependencies', 'optionalDependencies', 'peerDependencies']) {
      for (const dep of Object.keys(inner[field] ?? {})) {
        if (!bundled.includes(dep))
          problems.push(`${name} depends on ${dep}, which npm would not fetch`);
      }
    }
    const main = inner.main;
    if (main && !files.includes(path.posix.join(`package/node_modules/${name}`, main))) {
      problems.push(`${name}'s main ${main} is missing`);
    }
  }
  const worker = readJson(path.join(unpacked, 'package/package.json'));
  for (const bin of Object.values(worker.bin ?? {})) {
    if (!files.includes(path.posix.join('package', bin))) problems.push(`bin ${bin} is missing`);
  }
  if (problems.length > 0) fail(`the tarball is not right:\n  ${problems.join('\n  ')}`);
  return files.length;
}

function main() {
  const options = parseArgs(process.argv.slice(2));
  const env = { ...process.env, TURBO_TELEMETRY_DISABLED: '1' };
  if (options.build) {
    run(
      'npx',
      ['turbo', 'run', 'build', `--filter=${WORKER}`, '--output-logs=errors-only'],
      ROOT,
      env,
    );
  }

  const packages = workspacePackages();
  const worker = packages.get(WORKER);
  if (!worker) fail(`no ${WORKER} in the workspace`);
  const bundled = bundledClosure(packages);
  const owners = [WORKER, ...bundled];
  const dependencies = thirdPartyDependencies(packages, owners, 'dependencies');
  const optionalDependencies = thirdPartyDependencies(packages, owners, 'optionalDependencies');
  for (const dep of Object.keys(optionalDependencies)) delete dependencies[dep];
  for (const name of bundled) dependencies[name] = packages.get(name).manifest.version;

  // Staged outside the repository, so that npm sees no workspace root above it.
  const work = mkdtempSync(path.join(tmpdir(), 'archipelago-pack-worker-'));
  try {
    const stage = path.join(work, 'package');
    let copied = copyBuilt(worker.dir, stage, worker.manifest);
    for (const extra of ['README.md']) {
      if (existsSync(path.join(worker.dir, extra))) {
        copyFileSync(path.join(worker.dir, extra), path.join(stage, extra));
        copied++;
      }
    }
    const rootManifest = readJson(path.join(ROOT, 'package.json'));
    writeFileSync(
      path.join(stage, 'package.json'),
      `${JSON.stringify(
        installedManifest(
          { ...worker.manifest, engines: worker.manifest.engines ?? rootManifest.engines },
          {
            dependencies: Object.fromEntries(
              Object.entries(dependencies).sort(([a], [b]) => a.localeCompare(b)),
            ),
            ...(Object.keys(optionalDependencies).length > 0 ? { optionalDependencies } : {}),
            bundleDependencies: bundled,
          },
        ),
        null,
        2,
      )}\n`,
    );
    for (const name of bundled) {
      const { dir, manifest } = packages.get(name);
      const dest = path.join(stage, 'node_modules', ...name.split('/'));
      copied += copyBuilt(dir, dest, manifest);
      // Only the bundled packages' dependencies on each other stay in their manifests: npm
      // counts whatever a bundled package depends on as part of the bundle, expects it inside
      // the tarball and does not fetch it. Their registry dependencies are the worker's (above),
      // which Node's resolution finds from node_modules/@archipelago/<name>/ one level up.
      const inner = { ...manifest };
      for (const field of ['dependencies', 'optionalDependencies']) {
        const kept = Object.entries(manifest[field] ?? {}).filter(([dep]) => bundled.includes(dep));
        inner[field] = Object.fromEntries(kept);
      }
      writeFileSync(
        path.join(dest, 'package.json'),
        `${JSON.stringify(installedManifest(inner), null, 2)}\n`,
      );
    }

    mkdirSync(options.out, { recursive: true });
    const packEnv = Object.fromEntries(
      Object.entries(env).filter(
        ([k]) => !/^npm_config_(workspaces?|include_workspace_root)$/i.test(k),
      ),
    );
    const packed = JSON.parse(
      run('npm', ['pack', '--json', '--pack-destination', options.out], stage, packEnv),
    );
    const tarball = path.join(options.out, packed[0].filename);
    const fileCount = verifyTarball(tarball, bundled, work);
    const size = statSync(tarball).size;
    process.stderr.write(
      `pack-worker: ${packed[0].name}@${packed[0].version}, ${fileCount} files (${copied} built files staged), ` +
        `${(size / 1024).toFixed(0)} KiB; bundles ${bundled.join(', ')}; ` +
        `${Object.keys(dependencies).length - bundled.length} registry dependencies, ` +
        `${Object.keys(optionalDependencies).length} optional\n`,
    );
    process.stdout.write(`${tarball}\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main();
