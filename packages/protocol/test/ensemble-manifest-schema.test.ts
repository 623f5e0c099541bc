import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Value } from 'typebox/value';
import { describe, expect, it } from 'vitest';
import {
  EnsembleManifest as AnyManifest,
  canonicalJson,
  EnsembleManifestV1 as EnsembleManifest,
  EnsembleManifestV2,
  MANIFEST_V1_SCHEMA_ID as MANIFEST_SCHEMA_ID,
  MANIFEST_V2_SCHEMA_ID,
  manifestExpertSpec,
} from '../src/index.js';

const FILE = path.resolve(import.meta.dirname, '../schemas/ensemble-manifest.v1.schema.json');

/** The published JSON Schema of manifest v1, generated from the TypeBox definition. */
function jsonSchema(): string {
  const schema = {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: `https://archipelago.dev/schemas/${MANIFEST_SCHEMA_ID}.json`,
    ...JSON.parse(JSON.stringify(EnsembleManifest)),
  };
  return `${JSON.stringify(schema, null, 2)}\n`;
}

describe('ensemble manifest v1 schema', () => {
  it('the committed JSON Schema is the TypeBox definition (UPDATE_SCHEMAS=1 rewrites it)', () => {
    if (process.env.UPDATE_SCHEMAS) writeFileSync(FILE, jsonSchema());
    expect(readFileSync(FILE, 'utf8')).toBe(jsonSchema());
  });

  it('rejects unknown fields and wrong ids, so a manifest cannot carry unsigned extras', () => {
    const text = readFileSync(path.resolve(import.meta.dirname, 'fixtures/manifest.json'), 'utf8');
    const manifest = JSON.parse(text);
    expect(Value.Check(EnsembleManifest, manifest)).toBe(true);
    expect(Value.Check(EnsembleManifest, { ...manifest, extra: 1 })).toBe(false);
    expect(Value.Check(EnsembleManifest, { ...manifest, id: 'ens_nothex' })).toBe(false);
    expect(canonicalJson(manifest)).toBe(canonicalJson(JSON.parse(canonicalJson(manifest))));
  });
});

const FILE_V2 = path.resolve(import.meta.dirname, '../schemas/ensemble-manifest.v2.schema.json');

/** Manifest v1's fixture as v2: each expert's objective, schedule and time sampling as its spec. */
function v2Of(v1: Record<string, unknown>): Record<string, unknown> {
  const experts = (v1.experts as Record<string, unknown>[]).map((e) => {
    const { schedule: _s, timeSampling: _t, ...rest } = e;
    return { ...rest, spec: manifestExpertSpec(e as never) };
  });
  return { ...v1, schema: MANIFEST_V2_SCHEMA_ID, experts };
}

describe('ensemble manifest v2 schema', () => {
  it('the committed JSON Schema is the TypeBox definition (UPDATE_SCHEMAS=1 rewrites it)', () => {
    const text = `${JSON.stringify(
      {
        $schema: 'https://json-schema.org/draft/2020-12/schema',
        $id: `https://archipelago.dev/schemas/${MANIFEST_V2_SCHEMA_ID}.json`,
        ...JSON.parse(JSON.stringify(EnsembleManifestV2)),
      },
      null,
      2,
    )}\n`;
    if (process.env.UPDATE_SCHEMAS) writeFileSync(FILE_V2, text);
    expect(readFileSync(FILE_V2, 'utf8')).toBe(text);
  });

  it('carries each expert objective spec; loaders accept v1 and v2, and nothing in between', () => {
    const v1 = JSON.parse(
      readFileSync(path.resolve(import.meta.dirname, 'fixtures/manifest.json'), 'utf8'),
    );
    const v2 = v2Of(v1);
    expect(Value.Check(EnsembleManifestV2, v2)).toBe(true);
    expect(Value.Check(AnyManifest, v1)).toBe(true);
    expect(Value.Check(AnyManifest, v2)).toBe(true);
    // A v1 body under the v2 id, or a spec with a field its family lacks, is refused.
    expect(Value.Check(AnyManifest, { ...v1, schema: MANIFEST_V2_SCHEMA_ID })).toBe(false);
    const bad = structuredClone(v2) as { experts: { objective: Record<string, unknown> }[] };
    bad.experts[0]!.objective = {
      ...bad.experts[0]!.objective,
      timeSampling: { kind: 'uniform' },
      name: 'ddpm',
    };
    expect(Value.Check(AnyManifest, bad)).toBe(false);
    // v1 entries read as the specs they stand for.
    const specs = (v1.experts as never[]).map((e) => manifestExpertSpec(e));
    for (const s of specs) expect(['ddpm', 'fm']).toContain(s.name);
    expect(specs.find((s) => s.name === 'ddpm')).toMatchObject({ schedule: { kind: 'cosine' } });
  });

  it("carries how each expert was accepted (optional: older v2 manifests lack it), and nothing the schema doesn't know", () => {
    const v2 = v2Of(
      JSON.parse(readFileSync(path.resolve(import.meta.dirname, 'fixtures/manifest.json'), 'utf8')),
    ) as { experts: Record<string, unknown>[] };
    const acceptance = {
      midRatio: 0.68,
      highRatio: 1.05,
      specificity: 1.45,
      midTimes: [0.05, 0.1, 0.2],
      highTimes: [0.8, 0.9],
      reference: 'full',
      bar: { maxMidRatio: 0.95, maxHighRatio: 2, minSpecificity: 1 },
    };
    const withIt = { ...v2, experts: v2.experts.map((e) => ({ ...e, acceptance })) };
    expect(Value.Check(EnsembleManifestV2, withIt)).toBe(true);
    const single = {
      ...v2,
      experts: v2.experts.map((e) => ({ ...e, acceptance: { ...acceptance, specificity: null } })),
    };
    expect(Value.Check(EnsembleManifestV2, single)).toBe(true);
    for (const bad of [
      { ...acceptance, extra: 1 },
      { ...acceptance, reference: 'none' },
      { ...acceptance, bar: { maxMidRatio: 0.9 } },
    ]) {
      expect(
        Value.Check(EnsembleManifestV2, {
          ...v2,
          experts: v2.experts.map((e) => ({ ...e, acceptance: bad })),
        }),
      ).toBe(false);
    }
  });
});
