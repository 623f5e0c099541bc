import { describe, expect, it } from 'vitest';
import { timeGrid } from '../../src/samplers/time-grid.js';

describe('timeGrid', () => {
  it('has steps + 1 times from exactly 1 to exactly 0, strictly decreasing', () => {
    for (const shift of [1, 0.5, 3, 10]) {
      const grid = timeGrid(7, { shift });
      expect(grid.length).toBe(8);
      expect(grid[0]).toBe(1);
      expect(grid[7]).toBe(0);
      for (let i = 1; i < grid.length; i++) expect(grid[i]).toBeLessThan(grid[i - 1]!);
    }
  });

  it("shift 1 is uniform; t' = a t / (1 + (a - 1) t) grows with the shift a", () => {
    expect(timeGrid(4)).toEqual([1, 0.75, 0.5, 0.25, 0]);
    expect(timeGrid(4, { shift: 3 })[2]).toBeCloseTo((3 * 0.5) / (1 + 2 * 0.5), 14);
    const shifts = [0.5, 1, 2, 3, 6];
    const grids = shifts.map((shift) => timeGrid(10, { shift }));
    for (let i = 1; i < 10; i++) {
      for (let s = 1; s < shifts.length; s++)
        expect(grids[s]![i]).toBeGreaterThan(grids[s - 1]![i]!);
    }
  });

  it('rejects bad steps, shifts and options', () => {
    expect(() => timeGrid(0)).toThrow(/integer/);
    expect(() => timeGrid(2.5)).toThrow(/integer/);
    expect(() => timeGrid(10, { shift: 0 })).toThrow(/shift/);
    expect(() => timeGrid(10, { sigma: 1 } as unknown as { shift: number })).toThrow(
      /valid: shift/,
    );
  });
});
