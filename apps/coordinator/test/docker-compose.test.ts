import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

// There is no Docker engine on the CI machines: check the deployment file's wiring instead.
const file = path.resolve(import.meta.dirname, '../../../docker-compose.yml');

interface Service {
  image?: string;
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
  });
});
