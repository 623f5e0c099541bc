import { type Static, Type } from 'typebox';

/** Every error reply of the REST API and every WebSocket error frame has this shape. */
export const ErrorReply = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: 'Stable machine-readable code, e.g. `not_found`.' }),
      message: Type.String({ description: 'What went wrong, naming the offending input.' }),
      details: Type.Optional(Type.Unknown()),
    }),
  },
  { title: 'ErrorReply', description: 'An error' },
);
export type ErrorReply = Static<typeof ErrorReply>;

/** Opaque identifiers are a short type prefix plus random base-36 characters, e.g. `ds_k3x9q0w2ab`. */
export const Id = Type.String({ pattern: '^[a-z]{2,4}_[0-9a-z]{6,32}$', maxLength: 40 });

export const IdParams = Type.Object({ id: Id }, { additionalProperties: false });
export type IdParams = Static<typeof IdParams>;

/** ISO-8601 timestamp. */
export const Timestamp = Type.String({ format: 'date-time' });

export const ListQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
  },
  { additionalProperties: false },
);
export type ListQuery = Static<typeof ListQuery>;
