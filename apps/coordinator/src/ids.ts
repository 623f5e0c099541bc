import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

/** Prefixes say what an id names, so a wrong id in a URL or a CLI flag is obvious. */
export const ID_PREFIX = {
  dataset: 'ds',
  clustering: 'cl',
  shard: 'sh',
  run: 'run',
  expert: 'ex',
  job: 'job',
  worker: 'wk',
  token: 'tok',
  lease: 'ls',
  checkpoint: 'ck',
  router: 'rtr',
} as const;

/** A new random id such as `ds_0k3x9q0w2abx` (12 base-36 characters: ~62 bits). */
export function newId(kind: keyof typeof ID_PREFIX): string {
  const bytes = randomBytes(12);
  let out = '';
  for (const b of bytes) out += ALPHABET[b % 36];
  return `${ID_PREFIX[kind]}_${out}`;
}
