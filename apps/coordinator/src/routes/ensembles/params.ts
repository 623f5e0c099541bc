import { Type } from 'typebox';

/** `:id` of an ensemble: its content id. */
export const EnsembleParams = Type.Object(
  { id: Type.String({ pattern: '^ens_[0-9a-f]{32}$' }) },
  { additionalProperties: false },
);
