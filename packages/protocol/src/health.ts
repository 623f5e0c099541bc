import { type Static, Type } from 'typebox';

export const Health = Type.Object(
  { status: Type.Literal('ok'), version: Type.String(), uptimeSeconds: Type.Number() },
  { title: 'Health' },
);
export type Health = Static<typeof Health>;

export const Readiness = Type.Object(
  {
    status: Type.Union([Type.Literal('ready'), Type.Literal('not_ready')]),
    checks: Type.Record(
      Type.String(),
      Type.Object({ ok: Type.Boolean(), message: Type.Optional(Type.String()) }),
    ),
  },
  { title: 'Readiness' },
);
export type Readiness = Static<typeof Readiness>;
