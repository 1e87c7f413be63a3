/**
 * Weight averaging ("model soup", Wortsman et al. 2022): runs fine-tuned from one parent with
 * different random seeds end in the same basin, and the mean of their weights often predicts
 * held-out music better than any one of them. Training noise between such runs is large here
 * (docs/evaluation), so averaging is a way to keep what they share instead of picking the lucky
 * one. Only models that agree on everything that shapes a weight can be averaged.
 */
import * as tf from '@tensorflow/tfjs';
import type { Weights } from '../layers.ts';
import type { ModelSpec } from './folder.ts';

/** Everything that stops these specs' weights from being averaged (empty when they can be). */
export function averageProblems(specs: readonly (ModelSpec & { dir: string })[]): string[] {
  if (specs.length < 2) return [`averaging needs two or more models, got ${specs.length}`];
  const [first, ...rest] = specs;
  const problems: string[] = [];
  const same = (label: string, of: (s: ModelSpec) => unknown) => {
    const want = JSON.stringify(of(first));
    const shown = (text: string) => (text.length > 120 ? `${text.slice(0, 117)}...` : text);
    for (const s of rest) if (JSON.stringify(of(s)) !== want) problems.push(`${s.dir}: its ${label} differs from ${first.dir}'s (${shown(JSON.stringify(of(s)))} against ${shown(want)})`);
  };
  same('architecture', (s) => s.arch);
  same('hyperparameters', (s) => s.hyperparameters);
  same('composers', (s) => s.composers.map((c) => c.name));
  same('training data hash', (s) => s.data.hash);
  same('validation pieces', (s) => s.data.validationPieces);
  same('weights', (s) => s.weights);
  return problems;
}

/** The element-wise mean of same-shaped weight sets, as new variables (the caller disposes them). */
export function averageWeights(sets: readonly Weights[]): Weights {
  if (sets.length === 0) throw new Error('averageWeights: no weight sets');
  const names = Object.keys(sets[0]);
  for (const [i, set] of sets.entries()) {
    const missing = names.filter((n) => !set[n]);
    if (missing.length || Object.keys(set).length !== names.length) throw new Error(`averageWeights: set ${i} does not have the same weights as set 0 (${missing.join(', ') || 'extra names'})`);
  }
  return Object.fromEntries(
    names.map((n) => {
      const mean = tf.tidy(() => tf.div(tf.addN(sets.map((s) => s[n] as tf.Tensor)), sets.length));
      const variable = tf.variable(mean, false);
      mean.dispose();
      return [n, variable];
    }),
  );
}
