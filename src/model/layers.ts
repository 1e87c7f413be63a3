/**
 * What both models (the note model, note/, and the study's baseline, study/) are built of: their
 * named weights, the unique variable names tfjs needs, and the LSTM, whose recurrence has a
 * hand-written backward pass.
 */
import * as tf from '@tensorflow/tfjs';

export type Weights = Record<string, tf.Variable>;

let variableCounter = 0;
/** tfjs keeps one global registry of variable names, so two models need distinct names. */
export function uniqueVariableName(name: string): string {
  return `${name}#${++variableCounter}`;
}

/** One LSTM cell step; gates are laid out [input, forget, output | candidate]. */
export function lstmCell(xProj: tf.Tensor2D, h: tf.Tensor2D, c: tf.Tensor2D, wh: tf.Tensor2D, hidden: number): [tf.Tensor2D, tf.Tensor2D] {
  const gates = tf.add(xProj, tf.matMul(h, wh));
  const [ifo, candidate] = tf.split(gates, [3 * hidden, hidden], 1);
  const [i, f, o] = tf.split(tf.sigmoid(ifo), 3, 1);
  const cNext = tf.add(tf.mul(f, c), tf.mul(i, tf.tanh(candidate))) as tf.Tensor2D;
  const hNext = tf.mul(o, tf.tanh(cNext)) as tf.Tensor2D;
  return [hNext, cNext];
}

/**
 * Runs LSTM layer `l` of `w` over time-major rows [T*B, in]: every step's output, time-major
 * [T*B, hidden], and the last step's output [B, hidden]. States start at zero.
 */
export function lstmLayer(w: Weights, l: number, hidden: number, inputs: tf.Tensor2D, B: number, T: number): { outputs: tf.Tensor2D; last: tf.Tensor2D } {
  const xProj = tf.add(tf.matMul(inputs, w[`lstm${l}/wx`] as tf.Tensor2D), w[`lstm${l}/b`]) as tf.Tensor2D;
  const outputs = lstmRecurrence(xProj, w[`lstm${l}/wh`] as tf.Tensor2D, B, T);
  return { outputs, last: outputs.slice([(T - 1) * B, 0], [B, hidden]) };
}

/**
 * The recurrence over precomputed input projections xProj [T*B, 4H] with recurrent weights
 * wh [H, 4H] → outputs [T*B, H], with a hand-written backward pass (backpropagation through
 * time). Its forward is lstmCell step by step, the same ops in the same order. Autodiff's
 * backward adds one [H, 32] × [32, 4H] product and one [H, 4H] sum into the weight gradient per
 * step; this one collects every step's gate gradient and forms the weight gradient as one
 * [H, T*B] × [T*B, 4H] product, which runs at the backend's full matmul rate.
 * tests/model.test.ts checks its gradients against autodiff's through lstmCell.
 */
export function lstmRecurrence(xProj: tf.Tensor2D, wh: tf.Tensor2D, B: number, T: number, initial?: RecurrenceStart): tf.Tensor2D {
  const H = wh.shape[0];
  const run = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, weights, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
    const steps = tf.unstack(x.reshape([T, B, 4 * H])) as tf.Tensor2D[];
    const h0 = initial ? initial.h : (tf.zeros([B, H]) as tf.Tensor2D);
    const c0 = initial ? initial.c : (tf.zeros([B, H]) as tf.Tensor2D);
    let h = h0;
    let c = c0;
    const hs: tf.Tensor2D[] = [];
    const cs: tf.Tensor2D[] = [];
    const tcs: tf.Tensor2D[] = [];
    const sigmoids: tf.Tensor2D[] = [];
    const candidates: tf.Tensor2D[] = [];
    for (let t = 0; t < T; t++) {
      const gates = tf.add(steps[t], tf.matMul(h, weights));
      const [ifo, candidate] = tf.split(gates, [3 * H, H], 1);
      const s = tf.sigmoid(ifo) as tf.Tensor2D;
      const u = tf.tanh(candidate) as tf.Tensor2D;
      const [i, f, o] = tf.split(s, 3, 1);
      c = tf.add(tf.mul(f, c), tf.mul(i, u)) as tf.Tensor2D;
      const tc = tf.tanh(c) as tf.Tensor2D;
      h = tf.mul(o, tc) as tf.Tensor2D;
      hs.push(h);
      cs.push(c);
      tcs.push(tc);
      sigmoids.push(s);
      candidates.push(u);
    }
    const outputs = tf.concat(hs, 0) as tf.Tensor2D;
    if (initial?.onLastCell) initial.onLastCell(tf.keep(c));
    save([outputs, tf.concat(cs, 0), tf.concat(tcs, 0), tf.concat(sigmoids, 0), tf.concat(candidates, 0), weights, h0, c0]);
    return { value: outputs, gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => recurrenceGradients(dy as tf.Tensor2D, saved as tf.Tensor2D[], B, T, H) };
  });
  return run(xProj, wh) as tf.Tensor2D;
}

/**
 * Where a recurrence starts: the state carried from the previous chunk (constants: no gradient
 * flows into them), and a callback that receives the last step's cell state (kept; the caller
 * disposes it) so that the next chunk can start there.
 */
export interface RecurrenceStart {
  h: tf.Tensor2D;
  c: tf.Tensor2D;
  onLastCell?: (c: tf.Tensor2D) => void;
}

/** Backpropagation through time for lstmRecurrence: [dxProj, dWh]. */
function recurrenceGradients(dy: tf.Tensor2D, saved: tf.Tensor2D[], B: number, T: number, H: number): tf.Tensor[] {
  const [outputs, cells, tanhCells, sigmoids, candidates, wh, h0, c0] = saved;
  const at = (x: tf.Tensor2D, t: number) => x.slice([t * B, 0], [B, x.shape[1]]);
  let dhNext: tf.Tensor2D | undefined;
  let dcNext: tf.Tensor2D | undefined;
  const gateGrads: tf.Tensor2D[] = new Array(T);
  for (let t = T - 1; t >= 0; t--) {
    const s = at(sigmoids, t);
    const [i, f, o] = tf.split(s, 3, 1);
    const u = at(candidates, t);
    const tc = at(tanhCells, t);
    const dh = dhNext ? tf.add(at(dy, t), dhNext) : at(dy, t);
    // c_t = f·c_{t-1} + i·u and h_t = o·tanh(c_t)
    let dc = tf.mul(tf.mul(dh, o), tf.sub(1, tf.square(tc)));
    if (dcNext) dc = tf.add(dc, dcNext);
    const cPrev = t > 0 ? at(cells, t - 1) : c0;
    const dIfo = tf.concat([tf.mul(dc, u), tf.mul(dc, cPrev), tf.mul(dh, tc)], 1);
    const dGates = tf.concat([tf.mul(dIfo, tf.mul(s, tf.sub(1, s))), tf.mul(tf.mul(dc, i), tf.sub(1, tf.square(u)))], 1) as tf.Tensor2D;
    gateGrads[t] = dGates;
    dcNext = tf.mul(dc, f) as tf.Tensor2D;
    if (t > 0) dhNext = tf.matMul(dGates, wh, false, true);
  }
  const dx = tf.concat(gateGrads, 0) as tf.Tensor2D; // [T*B, 4H], time-major like xProj
  // h_{t-1} for every step: the initial state, then every output but the last.
  const previous = (T > 1 ? tf.concat([h0, outputs.slice([0, 0], [(T - 1) * B, H])], 0) : h0) as tf.Tensor2D;
  return [dx, tf.matMul(previous, dx, true, false)];
}
