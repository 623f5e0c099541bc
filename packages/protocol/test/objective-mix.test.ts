import { describe, expect, it } from 'vitest';
import { ObjectiveMixError, parseObjectiveMix } from '../src/objective-mix.js';

describe('parseObjectiveMix', () => {
  it('expands counts in order, DDPM first as listed', () => {
    expect(parseObjectiveMix('ddpm:2,fm:3', 5)).toEqual(['ddpm', 'ddpm', 'fm', 'fm', 'fm']);
    expect(parseObjectiveMix(' FM:1 , ddpm:1 ', 2)).toEqual(['fm', 'ddpm']);
  });

  it('accepts a single objective or any for every expert', () => {
    expect(parseObjectiveMix('fm', 3)).toEqual(['fm', 'fm', 'fm']);
    expect(parseObjectiveMix('any', 2)).toEqual(['any', 'any']);
    expect(parseObjectiveMix('ddpm:1,any:1', 2)).toEqual(['ddpm', 'any']);
  });

  it('rejects counts that do not sum to K, naming both', () => {
    expect(() => parseObjectiveMix('ddpm:2,fm:6', 4)).toThrow(/names 8 experts but the run has 4/);
  });

  it('rejects unknown objectives listing the valid ones', () => {
    expect(() => parseObjectiveMix('edm:4', 4)).toThrow(
      /unknown objective "edm"; valid: ddpm, fm, any/,
    );
    expect(() => parseObjectiveMix('ddpm=2', 2)).toThrow(ObjectiveMixError);
    expect(() => parseObjectiveMix('fm:1,fm:1', 2)).toThrow(/listed twice/);
  });
});
