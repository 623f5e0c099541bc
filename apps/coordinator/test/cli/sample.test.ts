/**
 * The offline `sample` command against real HTTP servers (node:http on 127.0.0.1, two ports =
 * two origins), run as a real process (dist/sample-bin.js): it needs a pinned key unless
 * `--insecure`, fetches files only from the manifest's origin or an `--allow-origin`, caps the
 * manifest and every file (Content-Length and counted bytes), and follows redirects only within
 * one origin. Then once against a real coordinator, with the key file of its GET /api/v1/keys.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { initBackend } from '@archipelago/models';
import type { EnsembleManifest, ManifestBody } from '@archipelago/protocol';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { manifestFiles, signManifest } from '../../src/ensembles/manifest.js';
import { loadOrCreateSigningKey, type SigningKey } from '../../src/ensembles/signing-key.js';
import {
  buildTestEnsemble,
  publishTestEnsemble,
  type TestEnsemble,
} from '../ensembles/test-ensemble.js';
import { makeApp, type TestApp } from '../helpers.js';

const BIN = path.resolve(import.meta.dirname, '../../dist/sample-bin.js');
const execFileP = promisify(execFile);

const isPng = (b: Uint8Array) =>
  Buffer.from(b.subarray(0, 8)).equals(Buffer.from('89504e470d0a1a0a', 'hex'));

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** An HTTP server on 127.0.0.1 answering from a route table, logging every path it is asked for. */
class Site {
  readonly routes = new Map<string, Handler>();
  readonly requests: string[] = [];
  url = '';
  private server?: Server;

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      res.on('error', () => {});
      this.requests.push(req.url ?? '');
      const route = this.routes.get(req.url ?? '');
      if (!route) {
        res.statusCode = 404;
        res.end('not found');
        return;
      }
      route(req, res);
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }
}

/** Serve `bytes`, with a Content-Length (of `announce` bytes when given) or chunked without. */
const serve =
  (bytes: Uint8Array | string, { contentLength = true }: { contentLength?: boolean } = {}) =>
  (_req: IncomingMessage, res: ServerResponse) => {
    const body = Buffer.from(bytes);
    if (contentLength) res.setHeader('content-length', body.length);
    // Chunked: several writes and no length, so only counting can tell the size.
    for (let at = 0; at < body.length; at += 64 * 1024)
      res.write(body.subarray(at, at + 64 * 1024));
    res.end();
  };

const redirect =
  (to: string, status = 302) =>
  (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(status, { location: to });
    res.end();
  };

async function sample(args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    const { stderr } = await execFileP(process.execPath, [BIN, ...args], { encoding: 'utf8' });
    return { code: 0, stderr };
  } catch (err) {
    const e = err as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr };
  }
}

describe('sample --manifest over HTTP (real servers, real process)', () => {
  let dir: string;
  let out: string;
  let key: SigningKey;
  let other: SigningKey;
  let ens: TestEnsemble;
  const a = new Site();
  const b = new Site();
  /** The published ensemble on a, relative checkpoint URIs, as the coordinator serves it. */
  let baseUrl: string;

  /** The test ensemble re-signed with `key` and every file URI at `${origin}/${prefix}/...`. */
  function variant(
    prefix: string,
    origin: string,
    edit: (body: ManifestBody) => void = () => {},
  ): { manifest: EnsembleManifest; text: string; paths: Map<string, string> } {
    const { id: _id, signature: _sig, ...body } = structuredClone(ens.manifest);
    const paths = new Map<string, string>();
    for (const { file } of manifestFiles(body as EnsembleManifest)) {
      const p = `/${prefix}/${path.basename(file.uri)}`;
      paths.set(file.uri, p);
      file.uri = `${origin}${p}`;
    }
    edit(body as ManifestBody);
    const manifest = signManifest(body as ManifestBody, key);
    return { manifest, text: JSON.stringify(manifest), paths };
  }

  /** Put a variant's manifest at a `/${prefix}/manifest.json` and its files on `site`. */
  function publish(prefix: string, site: Site, edit?: (body: ManifestBody) => void) {
    const v = variant(prefix, site.url, edit);
    a.routes.set(`/${prefix}/manifest.json`, serve(v.text));
    for (const [uri, p] of v.paths) site.routes.set(p, serve(ens.files.get(uri)!));
    return { ...v, url: `${a.url}/${prefix}/manifest.json` };
  }

  const common = () => ['--out', out, '--count', '2', '--steps', '2', '--backend', 'cpu'];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-sample-cli-'));
    out = path.join(dir, 'grid.png');
    key = loadOrCreateSigningKey(path.join(dir, 'key'));
    other = loadOrCreateSigningKey(path.join(dir, 'other'));
    await initBackend({ backend: 'cpu' });
    ens = await buildTestEnsemble(key);
    await a.start();
    await b.start();
    const prefix = `/api/v1/ensembles/${ens.manifest.id}`;
    a.routes.set(`${prefix}/manifest.json`, serve(ens.text));
    for (const [uri, bytes] of ens.files) a.routes.set(`${prefix}/${uri}`, serve(bytes));
    baseUrl = `${a.url}${prefix}/manifest.json`;
  });
  afterAll(async () => {
    await a.stop();
    await b.stop();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    a.requests.length = 0;
    b.requests.length = 0;
    await rm(out, { force: true });
  });

  it('refuses without a pinned key (exit 2, public_key_required) before fetching anything', async () => {
    const r = await sample(['--manifest', baseUrl, ...common()]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^sample: public_key_required: .*--public-key/m);
    expect(a.requests).toEqual([]);
  });

  it('offers only the backends that read synchronously: webgpu is refused before anything runs', async () => {
    const r = await sample(['--manifest', baseUrl, '--out', out, '--backend', 'webgpu']);
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.stderr).toMatch(
      /argument 'webgpu' is invalid\. Allowed choices are tensorflow-gpu, tensorflow, wasm, cpu/,
    );
    expect(a.requests).toEqual([]);
  });

  it('refuses a manifest signed by another key, and a malformed key', async () => {
    const wrong = await sample([
      '--manifest',
      baseUrl,
      '--public-key',
      other.publicKeyRaw,
      ...common(),
    ]);
    expect(wrong.code, wrong.stderr).toBe(3);
    expect(wrong.stderr).toMatch(/sample: untrusted_key: manifest is signed by key/);
    // Refused on the manifest alone: no checkpoint was downloaded.
    expect(a.requests).toEqual([new URL(baseUrl).pathname]);

    const bad = await sample(['--manifest', baseUrl, '--public-key', 'not-a-key', ...common()]);
    expect(bad.code, bad.stderr).toBe(2);
    expect(bad.stderr).toMatch(/sample: bad_public_key: --public-key: "not-a-key"/);

    const wrongFile = path.join(dir, 'wrong-keys.txt');
    await writeFile(wrongFile, `# not the publisher\n${other.publicKeyRaw}\n`);
    const wrongInFile = await sample([
      '--manifest',
      baseUrl,
      '--public-key-file',
      wrongFile,
      ...common(),
    ]);
    expect(wrongInFile.code, wrongInFile.stderr).toBe(3);
    expect(wrongInFile.stderr).toMatch(/untrusted_key/);
  });

  it('samples with the key pinned in a file: the JSON of GET /api/v1/keys, or PEM next to other keys', async () => {
    const json = path.join(dir, 'keys.json');
    await writeFile(
      json,
      JSON.stringify({
        keys: [
          { keyId: key.keyId, alg: 'ed25519', publicKey: key.publicKeyRaw, pem: key.publicKeyPem },
        ],
      }),
    );
    const ok = await sample(['--manifest', baseUrl, '--public-key-file', json, ...common()]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toMatch(/signature and every checkpoint verified/);
    expect(ok.stderr).not.toMatch(/warning/);
    expect(isPng(await readFile(out))).toBe(true);

    const pem = path.join(dir, 'publisher.pem');
    await writeFile(pem, key.publicKeyPem);
    const lines = path.join(dir, 'others.txt');
    await writeFile(lines, `${other.publicKeyRaw}\n`);
    await rm(out);
    const both = await sample([
      '--manifest',
      baseUrl,
      '--public-key-file',
      lines,
      '--public-key-file',
      pem,
      ...common(),
    ]);
    expect(both.code, both.stderr).toBe(0);
    expect(isPng(await readFile(out))).toBe(true);
  });

  it('--insecure trusts the key the manifest carries and says so on stderr', async () => {
    const r = await sample(['--manifest', baseUrl, '--insecure', ...common()]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      new RegExp(
        `sample: warning: --insecure: trusting the key the manifest carries \\(${key.keyId}\\)`,
      ),
    );
    expect(isPng(await readFile(out))).toBe(true);
  });

  it('refuses checkpoints on another origin unless --allow-origin names it', async () => {
    const v = publish('cross', b);
    const refused = await sample([
      '--manifest',
      v.url,
      '--public-key',
      key.publicKeyRaw,
      ...common(),
    ]);
    expect(refused.code, refused.stderr).toBe(3);
    expect(refused.stderr).toMatch(
      new RegExp(
        `sample: origin_not_allowed: expert 0: ${b.url}/cross/expert-0.safetensors is on ${b.url}, not the manifest's origin ${a.url}`,
      ),
    );
    expect(b.requests).toEqual([]);

    const allowed = await sample([
      '--manifest',
      v.url,
      '--public-key',
      key.publicKeyRaw,
      '--allow-origin',
      b.url,
      ...common(),
    ]);
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(b.requests.sort()).toEqual([
      '/cross/expert-0.safetensors',
      '/cross/expert-1.safetensors',
      '/cross/router.safetensors',
    ]);
    expect(isPng(await readFile(out))).toBe(true);
  });

  it('a manifest read from a file may name http(s) files only on allowed origins, and no other scheme', async () => {
    const v = variant('fromfile', b.url);
    const file = path.join(dir, 'remote-files.json');
    await writeFile(file, v.text);
    const r = await sample(['--manifest', file, '--public-key', key.publicKeyRaw, ...common()]);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(
      /origin_not_allowed: expert 0: .* and the manifest was read from a file/,
    );
    expect(b.requests).toEqual([]);

    // A URL manifest naming a file: URI is refused whatever is allowed.
    const f = publish('scheme', a, (body) => {
      body.experts[0]!.checkpoint.uri = 'file:///etc/passwd';
    });
    const scheme = await sample([
      '--manifest',
      f.url,
      '--public-key',
      key.publicKeyRaw,
      '--allow-origin',
      b.url,
      ...common(),
    ]);
    expect(scheme.code, scheme.stderr).toBe(3);
    expect(scheme.stderr).toMatch(
      /origin_not_allowed: expert 0: file:\/\/\/etc\/passwd is not an http\(s\) URL/,
    );
  });

  it('refuses a manifest over its cap, with or without Content-Length, over HTTP and on disk', async () => {
    const big = ' '.repeat(1024 * 1024) + ens.text; // still JSON, 1 MiB + the manifest
    a.routes.set('/big/manifest.json', serve(big));
    a.routes.set('/big-chunked/manifest.json', serve(big, { contentLength: false }));
    const announced = await sample([
      '--manifest',
      `${a.url}/big/manifest.json`,
      '--insecure',
      ...common(),
    ]);
    expect(announced.code, announced.stderr).toBe(3);
    expect(announced.stderr).toMatch(
      /download_too_large: the manifest: GET .* announces \d+ bytes \(Content-Length\), more than the 1048576 bytes/,
    );
    const counted = await sample([
      '--manifest',
      `${a.url}/big-chunked/manifest.json`,
      '--insecure',
      ...common(),
    ]);
    expect(counted.code, counted.stderr).toBe(3);
    expect(counted.stderr).toMatch(
      /download_too_large: the manifest: GET .* sent more than the 1048576 bytes/,
    );

    const onDisk = path.join(dir, 'manifest.json');
    await writeFile(onDisk, ens.text);
    const small = await sample([
      '--manifest',
      onDisk,
      '--insecure',
      '--max-manifest-bytes',
      '100',
      ...common(),
    ]);
    expect(small.code, small.stderr).toBe(3);
    expect(small.stderr).toMatch(
      /download_too_large: the manifest: .* has \d+ bytes, more than the 100 bytes/,
    );
  });

  it('refuses a checkpoint larger than the manifest declares, with or without Content-Length', async () => {
    const grown = (uri: string) =>
      Buffer.concat([Buffer.from(ens.files.get(uri)!), Buffer.alloc(256 * 1024)]);
    const withLength = publish('grown', a);
    a.routes.set('/grown/expert-0.safetensors', serve(grown('checkpoints/expert-0.safetensors')));
    const r1 = await sample([
      '--manifest',
      withLength.url,
      '--public-key',
      key.publicKeyRaw,
      ...common(),
    ]);
    expect(r1.code, r1.stderr).toBe(3);
    expect(r1.stderr).toMatch(
      new RegExp(
        `download_too_large: expert 0 checkpoint: GET .* announces \\d+ bytes \\(Content-Length\\), more than the ${withLength.manifest.experts[0]!.checkpoint.bytes} bytes`,
      ),
    );

    const chunked = publish('grown-chunked', a);
    a.routes.set(
      '/grown-chunked/expert-0.safetensors',
      serve(grown('checkpoints/expert-0.safetensors'), { contentLength: false }),
    );
    const r2 = await sample([
      '--manifest',
      chunked.url,
      '--public-key',
      key.publicKeyRaw,
      ...common(),
    ]);
    expect(r2.code, r2.stderr).toBe(3);
    expect(r2.stderr).toMatch(
      new RegExp(
        `download_too_large: expert 0 checkpoint: GET .* sent more than the ${chunked.manifest.experts[0]!.checkpoint.bytes} bytes`,
      ),
    );
  });

  it('refuses, before downloading, a declared size its architecture cannot have or over --max-download-bytes', async () => {
    // Signed by the trusted key, so only the size check stands between it and the download.
    const v = publish('declared', a, (body) => {
      body.experts[0]!.checkpoint.bytes += 1024 * 1024;
    });
    const r = await sample(['--manifest', v.url, '--public-key', key.publicKeyRaw, ...common()]);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(
      /download_too_large: expert 0: the manifest says its checkpoint has \d+ bytes; a checkpoint of its architecture has at most \d+/,
    );
    expect(a.requests).toEqual(['/declared/manifest.json']);
    a.requests.length = 0;

    const capped = await sample([
      '--manifest',
      baseUrl,
      '--public-key',
      key.publicKeyRaw,
      '--max-download-bytes',
      '1000',
      ...common(),
    ]);
    expect(capped.code, capped.stderr).toBe(3);
    expect(capped.stderr).toMatch(
      /download_too_large: expert 0: .* more than the 1000 bytes allowed \(--max-download-bytes\)/,
    );
    expect(a.requests).toEqual([new URL(baseUrl).pathname]);
  });

  it('follows redirects within the origin, refuses one to another origin (even an allowed one) and loops', async () => {
    publish('redir', a);
    a.routes.set('/redir/start.json', redirect('/redir/manifest.json'));
    a.routes.set('/redir/expert-0.safetensors', redirect(`${a.url}/redir/moved/expert-0`, 307));
    a.routes.set(
      '/redir/moved/expert-0',
      serve(ens.files.get('checkpoints/expert-0.safetensors')!),
    );
    const ok = await sample([
      '--manifest',
      `${a.url}/redir/start.json`,
      '--public-key',
      key.publicKeyRaw,
      ...common(),
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(a.requests).toContain('/redir/moved/expert-0');
    expect(isPng(await readFile(out))).toBe(true);

    // The manifest itself redirected to another origin.
    b.routes.set('/away/manifest.json', serve(ens.text));
    a.routes.set('/away/manifest.json', redirect(`${b.url}/away/manifest.json`));
    const away = await sample([
      '--manifest',
      `${a.url}/away/manifest.json`,
      '--public-key',
      key.publicKeyRaw,
      ...common(),
    ]);
    expect(away.code, away.stderr).toBe(3);
    expect(away.stderr).toMatch(
      new RegExp(
        `redirect_refused: the manifest: GET ${a.url}/away/manifest.json redirects to ${b.url}/away/manifest.json, on another origin`,
      ),
    );

    // A checkpoint redirected to another origin: refused even with that origin allowed.
    publish('awayck', a);
    a.routes.set('/awayck/expert-0.safetensors', redirect(`${b.url}/awayck/expert-0.safetensors`));
    b.routes.set(
      '/awayck/expert-0.safetensors',
      serve(ens.files.get('checkpoints/expert-0.safetensors')!),
    );
    const awayCk = await sample([
      '--manifest',
      `${a.url}/awayck/manifest.json`,
      '--public-key',
      key.publicKeyRaw,
      '--allow-origin',
      b.url,
      ...common(),
    ]);
    expect(awayCk.code, awayCk.stderr).toBe(3);
    expect(awayCk.stderr).toMatch(
      /redirect_refused: expert 0 checkpoint: GET .* redirects to .*, on another origin/,
    );
    expect(b.requests).toEqual([]);

    a.routes.set('/loop/manifest.json', redirect('/loop/manifest.json'));
    const loop = await sample([
      '--manifest',
      `${a.url}/loop/manifest.json`,
      '--insecure',
      ...common(),
    ]);
    expect(loop.code, loop.stderr).toBe(3);
    expect(loop.stderr).toMatch(/redirect_refused: the manifest: more than 5 redirects/);
    expect(a.requests.filter((p) => p === '/loop/manifest.json')).toHaveLength(6);
  });
});

describe('sample --manifest against a real coordinator', () => {
  let t: TestApp;
  let dir: string;
  let manifestUrl: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-sample-coord-'));
    await initBackend({ backend: 'cpu' });
    t = await makeApp();
    const manifest = await publishTestEnsemble(t.coordinator);
    const base = await t.app.listen({ port: 0, host: '127.0.0.1' });
    manifestUrl = `${base}/api/v1/runs/${manifest.run.id}/manifest.json`;
    // The consumer pins the key once, from the coordinator it trusts.
    await writeFile(path.join(dir, 'keys.json'), await (await fetch(`${base}/api/v1/keys`)).text());
  });
  afterAll(async () => {
    t.app.server.closeAllConnections();
    await t.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('samples from the run alias with the key file of GET /api/v1/keys, and refuses without it', async () => {
    const out = path.join(dir, 'grid.png');
    const args = ['--manifest', manifestUrl, '--out', out, '--count', '2', '--steps', '2'];
    const refused = await sample([...args, '--backend', 'cpu']);
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toMatch(/public_key_required/);
    const ok = await sample([
      ...args,
      '--backend',
      'cpu',
      '--public-key-file',
      path.join(dir, 'keys.json'),
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toMatch(/signature and every checkpoint verified/);
    expect(isPng(await readFile(out))).toBe(true);
  });
});
