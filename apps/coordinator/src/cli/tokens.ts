import type { Command } from 'commander';
import { Type } from 'typebox';
import { createToken, listTokens, revokeToken } from '../services/tokens.js';
import { checkBody, dataDirOption, print } from './options.js';
import { withCoordinator } from './with-coordinator.js';

const TokenBody = Type.Object({ name: Type.String({ minLength: 1, maxLength: 100 }) });

/** `token create|list|revoke`: worker tokens. */
export function registerTokenCommands(program: Command): void {
  const token = program.command('token').description('worker tokens: create, list, revoke');
  token
    .command('create')
    .description('create a worker token and print its secret (shown once)')
    .requiredOption('--name <name>', 'who the token is for')
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action(async (opts) =>
      withCoordinator(opts, async (c) => {
        const created = createToken(
          c.db,
          checkBody<{ name: string }>(TokenBody, { name: opts.name }, 'token options').name,
        );
        print(
          created,
          opts.json,
          () =>
            `${created.token}\n(token ${created.id} "${created.name}"; the secret is not shown again)`,
        );
      }),
    );
  token
    .command('list')
    .description('list worker tokens')
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action(async (opts) =>
      withCoordinator(opts, async (c) => {
        const all = listTokens(c.db);
        print(all, opts.json, () =>
          all.length === 0
            ? 'no tokens'
            : all
                .map(
                  (t) =>
                    `${t.id}  ${t.name.padEnd(24)} ${t.prefix}…  ${t.revokedAt ? `revoked ${t.revokedAt}` : 'active'}`,
                )
                .join('\n'),
        );
      }),
    );
  token
    .command('revoke <tokenId>')
    .description(
      "revoke a token and end its workers' leases; a running coordinator closes their connections within a second",
    )
    .addOption(dataDirOption())
    .action(async (id: string, opts) =>
      withCoordinator(opts, async (c) => {
        const t = revokeToken(c.db, id);
        process.stdout.write(
          `revoked ${t.id} "${t.name}"; ended ${t.endedLeases.length} active lease(s)\n`,
        );
      }),
    );
}
