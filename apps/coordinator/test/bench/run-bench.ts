/** A bench script of apps/coordinator/bench run as a real process: its JSON lines, parsed. */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export async function runBench<Line>(
  script: string,
  env: Record<string, string>,
  timeoutMs: number,
): Promise<Line[]> {
  const { stdout } = await run(
    process.execPath,
    [path.join(import.meta.dirname, '../../bench', script)],
    {
      env: { ...process.env, ...env },
      timeout: timeoutMs,
    },
  );
  return stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Line);
}
