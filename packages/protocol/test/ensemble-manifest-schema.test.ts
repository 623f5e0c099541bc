import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Value } from 'typebox/value';
import { describe, expect, it } from 'vitest';
import { canonicalJson, EnsembleManifest, MANIFEST_SCHEMA_ID } from '../src/index.js';

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
