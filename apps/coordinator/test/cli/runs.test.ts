import { describe, expect, it } from 'vitest';
import { initFromRef } from '../../src/cli/runs.js';

describe('run create --init-from', () => {
  it('reads <run id>:<cluster> as the body it names and refuses anything else', () => {
    expect(initFromRef('run_abc123def:0')).toEqual({ runId: 'run_abc123def', cluster: 0 });
    expect(initFromRef('run_abc123def:12')).toEqual({ runId: 'run_abc123def', cluster: 12 });
    for (const bad of ['run_abc123def', 'run_abc123def:', 'run_abc123def:-1', ':0', 'a:1.5']) {
      expect(() => initFromRef(bad)).toThrow('--init-from must be <run id>:<cluster>');
    }
  });
});
