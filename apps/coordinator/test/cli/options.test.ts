import { Command, Option } from 'commander';
import { afterEach, describe, expect, it } from 'vitest';
import {
  configOption,
  int,
  nonNegativeInt,
  num,
  showConfigEnvInHelp,
} from '../../src/cli/options.js';

const helpOf = (option: Option) =>
  showConfigEnvInHelp(new Command('t')).addOption(option).helpInformation();

describe('configOption', () => {
  afterEach(() => {
    delete process.env.ARCHIPELAGO_HOST;
  });

  it("names the setting's variable in help exactly as commander's .env() does", () => {
    expect(helpOf(configOption('host', '--host <host>', 'address to listen on'))).toBe(
      helpOf(new Option('--host <host>', 'address to listen on').env('ARCHIPELAGO_HOST')),
    );
    expect(
      helpOf(configOption('logLevel', '--log-level <level>', 'log level').choices(['a', 'b'])),
    ).toContain('(choices: "a", "b", env: ARCHIPELAGO_LOG_LEVEL)');
  });

  it('leaves the variable to loadConfig: commander does not read it', () => {
    process.env.ARCHIPELAGO_HOST = '10.0.0.1';
    const program = new Command('t')
      .addOption(configOption('host', '--host <host>', 'address'))
      .action(() => {});
    expect(program.parse([], { from: 'user' }).opts().host).toBeUndefined();
    expect(program.parse(['--host', '::1'], { from: 'user' }).opts().host).toBe('::1');
  });
});

describe('number parsers', () => {
  it('take whole numbers or finite numbers and name the flag otherwise', () => {
    expect(int('--k')('-3')).toBe(-3);
    expect(() => int('--k')('2.5')).toThrow('--k must be an integer, got "2.5"');
    expect(nonNegativeInt('--n')('0')).toBe(0);
    expect(() => nonNegativeInt('--n')('-1')).toThrow('--n must be a non-negative integer');
    expect(num('--lr')('1e-3')).toBe(0.001);
    expect(() => num('--lr')(' ')).toThrow('--lr must be a number, got " "');
    expect(() => num('--lr')('Infinity')).toThrow(/must be a number/);
  });
});
