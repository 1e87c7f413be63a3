/**
 * Stateful, batched, seeded sampling. Each step feeds only the previous note: the LSTM state
 * and a ring of recent attention keys/values are carried, the window is never re-run.
 */
import * as tf from '@tensorflow/tfjs';
import { HEAD_SIZES, inputWidth, writeInputRow } from './features.ts';
import { conditionOn, disposeState, headLogits, initialState, stepForward, type Hyperparameters, type StepState, type Weights } from './network.ts';
import { seededRandom, type Random } from './random.ts';
import { PITCH_MAX, PITCH_MIN, STEPS_PER_BEAT, beatPositions, type NoteToken } from '../tokens/tokenize.ts';

export interface SampleRequest {
  /** Composer index; the number of composers means "any composer". */
  composer: number;
  notes: number;
  temperature: number;
  topP: number;
  randomSeed: number;
  /** Notes to continue (the state is built from them; they are not part of the output). */
  primer?: NoteToken[];
}

/** Longest primer fed to the model: earlier notes barely affect an LSTM state. */
export const MAX_PRIMER = 512;

/**
 * Picks a class from logits with temperature and nucleus (top-p) sampling; `allowed` masks
 * classes out. Temperature 0 is greedy (argmax). Pure apart from the generator it draws from.
 */
export function sampleNext(logits: ArrayLike<number>, temperature: number, topP: number, rng: Random, allowed?: (index: number) => boolean): number {
  const n = logits.length;
  const order: number[] = [];
  for (let i = 0; i < n; i++) if (!allowed || allowed(i)) order.push(i);
  if (order.length === 0) throw new Error('sampleNext: every class is masked out');
  if (temperature <= 0) return order.reduce((best, i) => (logits[i] > logits[best] ? i : best), order[0]);
  let max = -Infinity;
  for (const i of order) max = Math.max(max, logits[i] / temperature);
  const probs = new Float64Array(n);
  let sum = 0;
  for (const i of order) {
    probs[i] = Math.exp(logits[i] / temperature - max);
    sum += probs[i];
  }
  order.sort((a, b) => probs[b] - probs[a] || a - b);
  const cutoff = Math.min(1, topP) * sum;
  let kept = 0;
  let mass = 0;
  for (const i of order) {
    mass += probs[i];
    kept++;
    if (mass >= cutoff) break;
  }
  let r = rng.next() * mass;
  for (let k = 0; k < kept; k++) {
    r -= probs[order[k]];
    if (r <= 0) return order[k];
  }
  return order[kept - 1];
}

function concatStates(states: StepState[]): StepState {
  if (states.length === 1) return states[0];
  const joined: StepState = {
    h: states[0].h.map((_, l) => tf.concat(states.map((s) => s.h[l]), 0) as tf.Tensor2D),
    c: states[0].c.map((_, l) => tf.concat(states.map((s) => s.c[l]), 0) as tf.Tensor2D),
    keys: tf.concat(states.map((s) => s.keys), 0) as tf.Tensor3D,
    values: tf.concat(states.map((s) => s.values), 0) as tf.Tensor3D,
    mask: tf.concat(states.map((s) => s.mask), 0) as tf.Tensor2D,
    filled: states.flatMap((s) => s.filled),
  };
  states.forEach(disposeState);
  return joined;
}

function inputTensor(previous: (NoteToken | undefined)[], positions: number[], composers: number[], composerCount: number): tf.Tensor2D {
  const D = inputWidth(composerCount);
  const data = new Float32Array(previous.length * D);
  previous.forEach((p, r) => writeInputRow(data, r * D, p, positions[r], composers[r]));
  return tf.tensor2d(data, [previous.length, D]);
}

function oneHot(indices: number[], classes: number): tf.Tensor2D {
  const data = new Float32Array(indices.length * classes);
  indices.forEach((c, r) => (data[r * classes + c] = 1));
  return tf.tensor2d(data, [indices.length, classes]);
}

/** Feeds a primer through one row's state; returns the state after its last note. */
function prime(w: Weights, h: Hyperparameters, composer: number, composerCount: number, primer: NoteToken[]): StepState {
  let state = initialState(h, 1);
  const positions = beatPositions(primer);
  for (let i = 0; i < primer.length; i++) {
    const x = inputTensor([i === 0 ? undefined : primer[i - 1]], [i === 0 ? 0 : positions[i - 1]], [composer], composerCount);
    const step = stepForward(w, h, state, x);
    x.dispose();
    step.z.dispose();
    state = step.state;
  }
  return state;
}

/**
 * Generates `notes` tokens for each request, all rows in one pass per step. Requests with
 * different lengths share the pass; each stops contributing once it has its notes.
 */
export function generateTokens(w: Weights, h: Hyperparameters, composerCount: number, requests: SampleRequest[]): NoteToken[][] {
  if (requests.length === 0) return [];
  const B = requests.length;
  const rngs = requests.map((r) => seededRandom(r.randomSeed));
  const primers = requests.map((r) => (r.primer ?? []).slice(-MAX_PRIMER));
  let state = concatStates(primers.map((p, r) => (p.length > 0 ? prime(w, h, requests[r].composer, composerCount, p) : initialState(h, 1))));
  const previous: (NoteToken | undefined)[] = primers.map((p) => p[p.length - 1]);
  const onset = primers.map((p) => {
    const pos = beatPositions(p);
    return p.length ? pos[p.length - 1] : 0;
  });
  const composers = requests.map((r) => r.composer);
  const outputs: NoteToken[][] = requests.map(() => []);
  const total = Math.max(...requests.map((r) => r.notes));
  const [DT, PITCH] = HEAD_SIZES;
  try {
    for (let step = 0; step < total; step++) {
      const x = inputTensor(previous, onset.map((o) => o % STEPS_PER_BEAT), composers, composerCount);
      const next = stepForward(w, h, state, x);
      x.dispose();
      state = next.state;
      const z = next.z;
      const dtLogits = headLogits(w, z, 'dt');
      const dtValues = dtLogits.dataSync();
      dtLogits.dispose();
      const dts = requests.map((req, r) => {
        const prev = previous[r];
        // A chord is ordered low to high: nothing can follow the top key at the same onset.
        const blockChord = prev !== undefined && prev.pitch >= PITCH_MAX;
        return sampleNext(dtValues.subarray(r * DT, (r + 1) * DT), req.temperature, req.topP, rngs[r], blockChord ? (i) => i > 0 : undefined);
      });
      const dtHot = oneHot(dts, DT);
      const z2 = conditionOn(w, z, 'dt', dtHot);
      dtHot.dispose();
      z.dispose();
      const pitchLogits = headLogits(w, z2, 'pitch');
      const pitchValues = pitchLogits.dataSync();
      pitchLogits.dispose();
      const pitches = requests.map((req, r) => {
        const prev = previous[r];
        const floor = dts[r] === 0 && prev !== undefined ? prev.pitch - PITCH_MIN : -1;
        return sampleNext(pitchValues.subarray(r * PITCH, (r + 1) * PITCH), req.temperature, req.topP, rngs[r], floor >= 0 ? (i) => i > floor : undefined);
      });
      const pitchHot = oneHot(pitches, PITCH);
      const z3 = conditionOn(w, z2, 'pitch', pitchHot);
      pitchHot.dispose();
      z2.dispose();
      const durLogits = headLogits(w, z3, 'dur');
      const velLogits = headLogits(w, z3, 'vel');
      z3.dispose();
      const durValues = durLogits.dataSync();
      const velValues = velLogits.dataSync();
      tf.dispose([durLogits, velLogits]);
      const [, , DUR, VEL] = HEAD_SIZES;
      requests.forEach((req, r) => {
        const token: NoteToken = {
          dt: dts[r],
          pitch: pitches[r] + PITCH_MIN,
          dur: sampleNext(durValues.subarray(r * DUR, (r + 1) * DUR), req.temperature, req.topP, rngs[r]) + 1,
          vel: sampleNext(velValues.subarray(r * VEL, (r + 1) * VEL), req.temperature, req.topP, rngs[r]),
        };
        if (outputs[r].length < req.notes) outputs[r].push(token);
        if (previous[r] !== undefined || outputs[r].length > 1) onset[r] += token.dt;
        previous[r] = token;
      });
    }
  } finally {
    disposeState(state);
  }
  return outputs;
}
