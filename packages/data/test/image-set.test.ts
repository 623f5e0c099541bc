import { describe, expect, it } from 'vitest';
import { countLabels, type ImageSet, subsetImageSet, validateImageSet } from '../src/image-set.js';

function tiny(): ImageSet {
  return {
    height: 2,
    width: 2,
    channels: 1,
    count: 3,
    pixels: Uint8Array.from({ length: 12 }, (_, i) => i),
    labels: Int32Array.from([0, 1, -1]),
    classNames: ['a', 'b'],
    sources: ['x.png', 'y.png', 'z.png'],
  };
}

describe('validateImageSet', () => {
  it('accepts a consistent set', () => {
    expect(() => validateImageSet(tiny())).not.toThrow();
  });

  it('names the broken invariant', () => {
    expect(() => validateImageSet({ ...tiny(), pixels: new Uint8Array(11) })).toThrow(/length 11/);
    expect(() => validateImageSet({ ...tiny(), labels: Int32Array.from([0, 2, 0]) })).toThrow(
      /label 2 of image 1/,
    );
    expect(() => validateImageSet({ ...tiny(), channels: 2 as 1 })).toThrow(/channels/);
    expect(() => validateImageSet({ ...tiny(), sources: ['a'] })).toThrow(/sources/);
  });
});

describe('subsetImageSet', () => {
  it('copies the chosen images in order, keeping class names', () => {
    const s = subsetImageSet(tiny(), [2, 0, 2]);
    expect(s.count).toBe(3);
    expect([...s.pixels]).toEqual([8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11]);
    expect([...s.labels]).toEqual([-1, 0, -1]);
    expect(s.sources).toEqual(['z.png', 'x.png', 'z.png']);
    expect(s.classNames).toEqual(['a', 'b']);
    expect(() => subsetImageSet(tiny(), [3])).toThrow(RangeError);
  });

  it('counts labels', () => {
    expect(countLabels(tiny())).toEqual({ counts: [1, 1], unlabeled: 1 });
  });
});
