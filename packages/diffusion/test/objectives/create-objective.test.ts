import { describe, expect, it } from 'vitest';
import { createObjective } from '../../src/objectives/create-objective.js';
import { DdpmObjective as DdpmEpsObjective } from '../../src/objectives/ddpm-objective.js';
import { FlowMatchingObjective } from '../../src/objectives/flow-matching.js';
import type { ObjectiveConfig } from '../../src/objectives/objective.js';

describe('createObjective', () => {
  it('builds the named objective; its config rebuilds it', () => {
    const fm = createObjective({ name: 'fm', timeSampling: { kind: 'uniform' } });
    const ddpm = createObjective({ name: 'ddpm', schedule: { kind: 'linear' } });
    expect(fm).toBeInstanceOf(FlowMatchingObjective);
    expect(ddpm).toBeInstanceOf(DdpmEpsObjective);
    expect(fm.name).toBe('fm');
    expect(ddpm.name).toBe('ddpm');
    const again = createObjective(JSON.parse(JSON.stringify(ddpm.config)));
    expect(again.config).toEqual(ddpm.config);
  });

  it('unknown names and keys throw listing the valid ones', () => {
    expect(() => createObjective({ name: 'edm' } as unknown as ObjectiveConfig)).toThrow(
      /valid: ddpm, fm/,
    );
    expect(() =>
      createObjective({
        name: 'fm',
        timeSampling: { kind: 'uniform' },
        schedule: { kind: 'cosine' },
      } as unknown as ObjectiveConfig),
    ).toThrow(/valid: name, timeSampling/);
  });
});
