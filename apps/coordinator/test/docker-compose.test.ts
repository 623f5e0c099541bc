import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

// There is no Docker engine on the CI machines: check the deployment files' wiring instead.
const root = path.resolve(import.meta.dirname, '../../..');
const file = path.join(root, 'docker-compose.yml');

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string; target: string };
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  entrypoint?: string[];
  deploy?: {
    resources: {
      reservations: { devices: { driver: string; count: number; capabilities: string[] }[] };
    };
  };
}

describe('docker-compose.yml', async () => {
  const doc = parse(await readFile(file, 'utf8'), { merge: true }) as {
    services: Record<string, Service>;
    volumes: Record<string, unknown>;
  };
  const s = doc.services;

  it('has the coordinator, redis, minio (with bucket creation), a sampler and a GPU worker', () => {
    expect(Object.keys(s).sort()).toEqual([
      'coordinator',
      'minio',
      'minio-init',
      'redis',
      'sampler',
      'worker',
    ]);
  });

  it('runs a sampler on Redis and the S3 store, with no database', () => {
    const c = s.sampler!;
    expect(c.command).toEqual(['node', 'apps/coordinator/dist/bin.js', 'sampler']);
    expect(c.environment).toMatchObject({
      ARCHIPELAGO_REDIS_URL: 'redis://redis:6379',
      ARCHIPELAGO_S3_BUCKET: 'archipelago',
      ARCHIPELAGO_S3_ENDPOINT: 'http://minio:9000',
    });
    expect(c.environment).not.toHaveProperty('ARCHIPELAGO_DATA_DIR');
  });

  it('runs the coordinator with its data dir on a volume, wired to redis and minio', () => {
    const c = s.coordinator!;
    expect(c.command).toEqual(['node', 'apps/coordinator/dist/bin.js', 'serve']);
    expect(c.ports).toContain('8080:8080');
    expect(c.environment).toMatchObject({
      ARCHIPELAGO_HOST: '0.0.0.0',
      ARCHIPELAGO_PORT: '8080',
      ARCHIPELAGO_DATA_DIR: '/data',
      ARCHIPELAGO_REDIS_URL: 'redis://redis:6379',
      ARCHIPELAGO_S3_BUCKET: 'archipelago',
      ARCHIPELAGO_S3_ENDPOINT: 'http://minio:9000',
      ARCHIPELAGO_S3_FORCE_PATH_STYLE: 'true',
    });
    expect(c.volumes).toContain('coordinator-data:/data');
    expect(doc.volumes).toHaveProperty('coordinator-data');
    expect(c.depends_on).toMatchObject({
      redis: { condition: 'service_healthy' },
      'minio-init': { condition: 'service_completed_successfully' },
    });
    expect(c.healthcheck!.test.join(' ')).toContain('/readyz');
  });

  it('uses the same credentials for minio, the bucket job and the coordinator', () => {
    const user = s.minio!.environment!.MINIO_ROOT_USER;
    expect(s.coordinator!.environment!.AWS_ACCESS_KEY_ID).toBe(user);
    expect(s['minio-init']!.environment!.MINIO_ROOT_USER).toBe(user);
    expect(s.coordinator!.environment!.AWS_SECRET_ACCESS_KEY).toBe(
      s.minio!.environment!.MINIO_ROOT_PASSWORD,
    );
    expect(s['minio-init']!.entrypoint!.join(' ')).toMatch(
      /mc mb --ignore-existing local\/archipelago/,
    );
    expect(s.minio!.ports).toEqual(expect.arrayContaining(['9000:9000']));
  });

  it('gives redis persistence and a health check', () => {
    expect(s.redis!.volumes).toContain('redis-data:/data');
    expect(s.redis!.healthcheck!.test).toContain('ping');
  });

  it('reserves a GPU for the worker and points it at the coordinator', () => {
    const w = s.worker!;
    expect(w.deploy!.resources.reservations.devices[0]).toMatchObject({
      driver: 'nvidia',
      count: 1,
      capabilities: ['gpu'],
    });
    expect(w.command!.join(' ')).toMatch(/--coordinator http:\/\/coordinator:8080 .*--gpu 0/);
    expect(w.volumes).toContain('worker-state:/work');
    expect(w.environment).toHaveProperty('ARCHIPELAGO_WORKER_TOKEN');
  });

  it('builds the coordinator, the sampler and the worker from the Dockerfile and mounts no checkout', () => {
    const targets = { coordinator: 'coordinator', sampler: 'coordinator', worker: 'worker-gpu' };
    for (const [name, target] of Object.entries(targets)) {
      expect(s[name]!.build, name).toEqual({ context: '.', dockerfile: 'Dockerfile', target });
      expect(s[name]!.image, name).toMatch(new RegExp(`^archipelago/${target}:`));
    }
    // Every service's volumes are named volumes declared below: no host path, no bind mount.
    for (const [name, service] of Object.entries(s)) {
      for (const v of service.volumes ?? []) {
        const source = v.split(':')[0]!;
        expect(source, `${name}: ${v}`).toMatch(/^[a-z][a-z0-9-]*$/);
        expect(doc.volumes, `${name}: ${v}`).toHaveProperty(source);
      }
    }
  });
});

/** One instruction of a Dockerfile: its keyword (upper case) and its arguments as written. */
interface Instruction {
  keyword: string;
  args: string;
}

interface Stage {
  name: string;
  /** The base image, with ARG defaults substituted. */
  from: string;
  body: Instruction[];
}

/**
 * The few parts of Dockerfile syntax these checks need: comments, line continuations, ARGs before
 * the first FROM (with defaults, substituted into FROM), `FROM image [AS name]` starting a stage.
 */
function parseDockerfile(text: string): { stages: Stage[] } {
  const lines: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') || (line === '' && current === '')) continue;
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    lines.push(current + line);
    current = '';
  }
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const line of lines) {
    const m = /^(\S+)\s*(.*)$/.exec(line)!;
    const keyword = m[1]!.toUpperCase();
    const rest = m[2]!;
    if (keyword === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)!;
      const from = f[1]!.replace(/\$\{(\w+)\}/g, (_, v: string) => args[v] ?? `\${${v}}`);
      stages.push({ name: f[2] ?? String(stages.length), from, body: [] });
    } else if (stages.length === 0) {
      expect(keyword, line).toBe('ARG');
      const [name, value] = rest.split('=');
      args[name!] = value ?? '';
    } else {
      stages.at(-1)!.body.push({ keyword, args: rest });
    }
  }
  return { stages };
}

/** A JSON-array (exec form) instruction's words. */
const execForm = (i: Instruction | undefined): string[] => JSON.parse(i?.args ?? 'null');

const last = (stage: Stage, keyword: string) =>
  stage.body.filter((i) => i.keyword === keyword).at(-1);

describe('Dockerfile', async () => {
  const { stages } = parseDockerfile(await readFile(path.join(root, 'Dockerfile'), 'utf8'));
  const stage = (name: string) => {
    const found = stages.find((x) => x.name === name);
    expect(found, `stage ${name}`).toBeDefined();
    return found!;
  };
  const compose = parse(await readFile(file, 'utf8'), { merge: true }) as {
    services: Record<string, Service>;
  };
  const build = stage('build');
  const buildScript = build.body
    .filter((i) => i.keyword === 'RUN')
    .map((i) => i.args)
    .join('\n');
  const runtimes = ['coordinator', 'worker', 'worker-gpu'];

  /** Which /out trees of the build stage a runtime stage copies into /app. */
  const treesOf = (st: Stage) =>
    st.body
      .filter((i) => i.keyword === 'COPY')
      .map((i) => /^--from=build\s+(\/out\/[\w-]+)\/\s+\/app\/$/.exec(i.args)?.[1])
      .filter((t) => t !== undefined);

  it('builds once with npm ci, npm run build and a prune of the dev dependencies', () => {
    expect(build.from).toMatch(/^node:20-/);
    const runs = build.body.filter((i) => i.keyword === 'RUN').map((i) => i.args);
    const at = (cmd: string) => runs.findIndex((r) => r.startsWith(cmd));
    expect(at('npm ci')).toBeGreaterThanOrEqual(0);
    expect(at('npm run build')).toBeGreaterThan(at('npm ci'));
    expect(at('npm prune --omit=dev')).toBeGreaterThan(at('npm run build'));
    expect(build.body.find((i) => i.keyword === 'COPY')?.args).toBe('. .');
  });

  it('has three runtime targets, each on a small or CUDA base, as a non-root user', () => {
    expect(stages.map((x) => x.name)).toEqual(expect.arrayContaining(['build', ...runtimes]));
    expect(stage('coordinator').from).toMatch(/^node:20-\w+-slim$/);
    expect(stage('worker').from).toMatch(/^node:20-\w+-slim$/);
    expect(stage('worker-gpu').from).toMatch(/^nvidia\/cuda:11\.2\.\d+-cudnn8-runtime-/);
    for (const name of runtimes) {
      const user = last(stage(name), 'USER')?.args;
      expect(user, name).toBeDefined();
      expect(['root', '0'], name).not.toContain(user!.split(':')[0]);
      // USER comes after the last RUN: nothing in the stage runs as root after it.
      const body = stage(name).body;
      expect(
        body.findLastIndex((i) => i.keyword === 'RUN'),
        name,
      ).toBeLessThan(body.findLastIndex((i) => i.keyword === 'USER'));
      // Nothing from the build context: the build stage's laid-out trees (and Node itself).
      for (const copy of body.filter((i) => i.keyword === 'COPY'))
        expect(copy.args, name).toMatch(
          /^--from=build \/out\/[\w-]+\/ \/app\/$|^--from=node-runtime \/usr\/local\/bin\/node /,
        );
    }
    // The official node images have the user `node`; the CUDA image gets its own.
    expect(last(stage('worker-gpu'), 'USER')!.args).toBe('archipelago');
    expect(last(stage('worker-gpu'), 'RUN')!.args).toMatch(/useradd --uid 1000 .*archipelago/);
    // Node on the CUDA image: the binary of the same Node 20 image the other targets run on.
    expect(stage('node-runtime').from).toBe(stage('worker').from);
  });

  it('copies into each image what it runs: dist, node_modules, migrations and the dashboard', () => {
    expect(treesOf(stage('coordinator'))).toEqual(['/out/common', '/out/coordinator']);
    expect(treesOf(stage('worker'))).toEqual(['/out/common', '/out/worker']);
    expect(treesOf(stage('worker-gpu'))).toEqual(['/out/common', '/out/worker', '/out/gpu']);
    expect(buildScript).toContain('cp -a package.json node_modules /out/common/');
    expect(buildScript).toContain('for p in packages/*; do copy_workspace "$p" /out/common; done');
    expect(buildScript).toContain('cp -a "$1/package.json" "$1/dist" "$2/$1/"');
    expect(buildScript).toContain('copy_workspace apps/coordinator /out/coordinator');
    expect(buildScript).toContain('copy_workspace apps/dashboard /out/coordinator');
    expect(buildScript).toContain('cp -a migrations /out/coordinator/');
    expect(buildScript).toContain('copy_workspace apps/worker /out/worker');
    // The build fails when the files the images start from are missing.
    for (const f of [
      '/out/coordinator/apps/dashboard/dist/index.html',
      '/out/coordinator/migrations/meta/_journal.json',
    ])
      expect(buildScript).toContain(`test -f ${f}`);
    // The migrations and the dashboard are where the coordinator looks by default.
    expect(existsSync(path.join(root, 'migrations/meta/_journal.json'))).toBe(true);
    expect(existsSync(path.join(root, 'apps/dashboard/index.html'))).toBe(true);
    expect(readFileSync(path.join(root, 'apps/coordinator/src/db/database.ts'), 'utf8')).toContain(
      "'../../../../migrations'",
    );
    expect(
      readFileSync(path.join(root, 'apps/coordinator/src/routes/dashboard/index.ts'), 'utf8'),
    ).toContain("'../../../../dashboard/dist/'");
  });

  it('starts every service with a file that npm run build produces and the image holds', async () => {
    /** The script `node` runs in a service: from its command, or its image's entrypoint. */
    const started = (name: string): { target: string; script: string } => {
      const svc = compose.services[name]!;
      const target = svc.build!.target;
      const st = stage(target);
      expect(last(st, 'WORKDIR')?.args, target).toBe('/app');
      const words = svc.command?.[0] === 'node' ? svc.command : execForm(last(st, 'ENTRYPOINT'));
      expect(words[0], name).toBe('node');
      return { target, script: words[1]! };
    };
    const scripts = ['coordinator', 'sampler', 'worker'].map(started);
    expect(scripts.map((x) => x.script)).toEqual([
      'apps/coordinator/dist/bin.js',
      'apps/coordinator/dist/bin.js',
      'apps/worker/dist/bin.js',
    ]);
    expect(execForm(last(stage('coordinator'), 'CMD'))).toEqual([
      'node',
      'apps/coordinator/dist/bin.js',
      'serve',
    ]);
    for (const { target, script } of scripts) {
      // The image holds it: one of the trees it copies has it, and the build checks that.
      const trees = treesOf(stage(target));
      expect(
        trees.some((t) => buildScript.includes(`test -f ${t}/${script}`)),
        `${target}: ${script}`,
      ).toBe(true);
      // npm run build produces it: the workspace's bin, compiled from src/ into dist/.
      const [, app, rest] = /^(apps\/[\w-]+)\/dist\/(.+)\.js$/.exec(script)!;
      const pkg = JSON.parse(await readFile(path.join(root, app!, 'package.json'), 'utf8'));
      expect(Object.values(pkg.bin), script).toContain(`./dist/${rest}.js`);
      expect(pkg.scripts.build).toBe('tsc -p tsconfig.build.json');
      const tsconfig = JSON.parse(
        await readFile(path.join(root, app!, 'tsconfig.build.json'), 'utf8'),
      );
      expect(tsconfig.compilerOptions).toMatchObject({ rootDir: 'src', outDir: 'dist' });
      expect(existsSync(path.join(root, app!, 'src', `${rest}.ts`)), script).toBe(true);
    }
    // This package's own build runs before its tests (turbo's test dependsOn build).
    expect(existsSync(path.join(root, 'apps/coordinator/dist/bin.js'))).toBe(true);
  });
});

describe('.dockerignore', async () => {
  const patterns = (await readFile(path.join(root, '.dockerignore'), 'utf8'))
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));

  it('keeps installed and built files, local state and secrets out of the build context', () => {
    expect(patterns).toEqual(
      expect.arrayContaining(['.git', '.env', '**/node_modules', '**/dist', 'data', 'out']),
    );
  });

  it('lets in what the build needs: sources, the lockfile, migrations', () => {
    for (const needed of [
      'package.json',
      'package-lock.json',
      '.npmrc',
      'migrations',
      'packages',
      'apps',
      'apps/coordinator/src',
      'turbo.json',
      'tsconfig.base.json',
    ]) {
      expect(patterns, needed).not.toContain(needed);
      expect(
        patterns.filter((p) => !p.includes('*') && needed.startsWith(`${p}/`)),
        needed,
      ).toEqual([]);
    }
  });
});
