/**
 * One way of choosing a sample's experts from its router probabilities (docs/method.md §5), one
 * file each; `select-experts.ts` registers them.
 */
export interface StrategyKind<C extends { kind: string }> {
  /** Checks a config of this kind (unknown keys and out-of-range values throw) and fills defaults. */
  resolve(config: C): C;
  /**
   * Marks the experts sample `row` keeps: `probs` is `[B * K]` row-major, `argmax` the row's
   * largest (lowest index on ties); sets `selected[row * K + k] = 1` for each kept k.
   */
  select(
    probs: ArrayLike<number>,
    row: number,
    K: number,
    argmax: number,
    config: C,
    selected: Uint8Array,
  ): void;
  /** The most experts one sample evaluates per step (what a request is charged). */
  maxExperts(config: C, K: number): number;
  /**
   * The routing names of the protocol this kind serves, each with the config it stands for, from
   * a request's `k` and `tau`.
   */
  readonly routings: Readonly<Record<string, (params: { k: number; tau: number }) => C>>;
}
