import '@tensorflow/tfjs-backend-cpu';
import type { Tensor } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';

/** Every test runs on the pure-JS CPU backend. */
export async function useCpuBackend(): Promise<void> {
  await tf.setBackend('cpu');
  await tf.ready();
}

/** Per-row `||a_b - b_b|| / ||b_b||` of two `[B, D]` tensors. */
export function rowRelativeErrors(a: Tensor, b: Tensor): number[] {
  const [batch] = b.shape as [number];
  const D = b.size / batch;
  const av = a.dataSync();
  const bv = b.dataSync();
  return Array.from({ length: batch }, (_, i) => {
    let num = 0;
    let den = 0;
    for (let d = 0; d < D; d++) {
      const diff = av[i * D + d]! - bv[i * D + d]!;
      num += diff * diff;
      den += bv[i * D + d]! ** 2;
    }
    return Math.sqrt(num / den);
  });
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export const maxOf = (values: number[]): number => values.reduce((a, b) => Math.max(a, b), 0);

/** Largest absolute elementwise difference of two tensors. */
export function maxAbsDiff(a: Tensor, b: Tensor): number {
  const av = a.dataSync();
  const bv = b.dataSync();
  if (av.length !== bv.length) throw new Error('size mismatch');
  let m = 0;
  for (let i = 0; i < av.length; i++) m = Math.max(m, Math.abs(av[i]! - bv[i]!));
  return m;
}

/** Sample mean `[D]`, covariance `[D][D]` and their standard errors from `[N, D]` samples. */
export function moments(samples: Tensor): {
  mean: number[];
  cov: number[][];
  meanSe: number[];
  covSe: number[][];
} {
  const [n, D] = samples.shape as [number, number];
  const v = samples.dataSync();
  const mean = Array.from({ length: D }, (_, d) => {
    let s = 0;
    for (let i = 0; i < n; i++) s += v[i * D + d]!;
    return s / n;
  });
  const cov: number[][] = [];
  const covSe: number[][] = [];
  for (let a = 0; a < D; a++) {
    cov.push([]);
    covSe.push([]);
    for (let b = 0; b < D; b++) {
      let s = 0;
      let s2 = 0;
      for (let i = 0; i < n; i++) {
        const p = (v[i * D + a]! - mean[a]!) * (v[i * D + b]! - mean[b]!);
        s += p;
        s2 += p * p;
      }
      const m = s / n;
      cov[a]!.push(m);
      covSe[a]!.push(Math.sqrt((s2 / n - m * m) / n));
    }
  }
  const meanSe = mean.map((_, d) => Math.sqrt(cov[d]![d]! / n));
  return { mean, cov, meanSe, covSe };
}
