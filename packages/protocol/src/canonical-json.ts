/**
 * Canonical JSON for content addressing and signatures: object keys sorted (by UTF-16 code
 * units, as `Array.prototype.sort` does) at every depth, no whitespace, `undefined` members
 * dropped as `JSON.stringify` drops them. Two equal values always give the same string.
 *
 * @throws {TypeError} on values JSON cannot represent faithfully (non-finite numbers, bigint,
 * functions, symbols), naming the path
 */
export function canonicalJson(value: unknown): string {
  return encode(value, '$');
}

function encode(value: unknown, path: string): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`${path} is ${value}: not valid JSON`);
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) {
        return `[${value.map((v, i) => (v === undefined ? 'null' : encode(v, `${path}[${i}]`))).join(',')}]`;
      }
      const entries = Object.entries(value as Record<string, unknown>)
        .filter(([, v]) => v !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${encode(v, `${path}.${k}`)}`).join(',')}}`;
    }
    default:
      throw new TypeError(`${path} is a ${typeof value}: not valid JSON`);
  }
}
