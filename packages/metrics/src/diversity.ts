/**
 * Intra-class diversity: for each class, the mean pairwise feature distance among the generated
 * samples the classifier assigns to it, over the same among the real images it assigns to it;
 * averaged over the classes with at least two samples on both sides. 1 means real diversity;
 * below 1, samples of a class look more alike than real ones (mode collapse within a class).
 */
import type { Features } from './features.js';

function meanPairwiseDistance(f: Features, rows: number[]): number {
  let sum = 0;
  let pairs = 0;
  for (let a = 0; a < rows.length; a++)
    for (let b = a + 1; b < rows.length; b++) {
      let s = 0;
      const ra = rows[a]! * f.dim;
      const rb = rows[b]! * f.dim;
      for (let d = 0; d < f.dim; d++) s += (f.data[ra + d]! - f.data[rb + d]!) ** 2;
      sum += Math.sqrt(s);
      pairs++;
    }
  return sum / pairs;
}

function byClass(classes: Int32Array): Map<number, number[]> {
  const out = new Map<number, number[]>();
  classes.forEach((c, i) => {
    const list = out.get(c) ?? [];
    list.push(i);
    out.set(c, list);
  });
  return out;
}

export interface IntraClassDiversity {
  /** Mean of the per-class ratios; NaN when no class has two samples on both sides. */
  mean: number;
  /** Per class (by index): the ratio, or null where either side has fewer than two samples. */
  perClass: (number | null)[];
}

/**
 * @param realClasses the class of each real row (predicted, like the generated ones)
 * @param generatedClasses the predicted class of each generated row
 */
export function intraClassDiversity(
  real: Features,
  realClasses: Int32Array,
  generated: Features,
  generatedClasses: Int32Array,
  classes: number,
): IntraClassDiversity {
  const realBy = byClass(realClasses);
  const genBy = byClass(generatedClasses);
  const perClass: (number | null)[] = [];
  for (let c = 0; c < classes; c++) {
    const r = realBy.get(c) ?? [];
    const g = genBy.get(c) ?? [];
    perClass.push(
      r.length >= 2 && g.length >= 2
        ? meanPairwiseDistance(generated, g) / meanPairwiseDistance(real, r)
        : null,
    );
  }
  const known = perClass.filter((v): v is number => v !== null);
  return {
    mean: known.length ? known.reduce((a, b) => a + b, 0) / known.length : Number.NaN,
    perClass,
  };
}
