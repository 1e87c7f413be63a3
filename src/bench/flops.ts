/**
 * Analytic matmul FLOP counts of the network (src/model/note/network.ts), for the bench's "training
 * runs at what share of the backend's matmul rate". A product [M,K]·[K,N] costs 2·M·K·N.
 * Backward counts the products autodiff actually computes: the gradient with respect to each
 * operand that depends on the weights (for the layer-0 input projection and the one-hot
 * target embeddings only the weight gradient, since inputs and targets are constants; for the
 * first recurrent step only the weight gradient, since the initial state is zeros). So a
 * training step costs a little under 3× the forward FLOPs. Elementwise ops, softmax, Adam and
 * the explicit transposes are not counted: this is the useful work.
 */
import { HEAD_SIZES } from '../model/note/features.ts';
import type { Hyperparameters } from '../model/note/network.ts';

export interface FlopBreakdown {
  /** Layer inputs (multi-hot for layer 0) times lstm/wx. */
  lstmInput: number;
  /** h(t-1) times lstm/wh, every step. */
  lstmRecurrent: number;
  /** Query/key/value projections, scores and the weighted sum of values. */
  attention: number;
  /** [LSTM output, context] times head/wz. */
  sharedHead: number;
  /** The four output heads plus the dt/pitch embeddings that condition the later heads. */
  outputHeads: number;
  total: number;
}

const mm = (m: number, k: number, n: number) => 2 * m * k * n;

function sum(b: Omit<FlopBreakdown, 'total'>): FlopBreakdown {
  return { ...b, total: b.lstmInput + b.lstmRecurrent + b.attention + b.sharedHead + b.outputHeads };
}

/**
 * FLOPs of one whole-chunk forward pass (sequenceHidden, then the heads on `headRows` rows:
 * B·T for many-to-many training, B when only the last position is supervised).
 */
export function forwardFlops(h: Hyperparameters, inputDim: number, B: number, T: number, headRows = B * T): FlopBreakdown {
  const rows = B * T;
  const H = h.hidden;
  const A = h.attentionDim;
  const W = h.attentionWindow;
  let lstmInput = 0;
  for (let l = 0; l < h.layers; l++) lstmInput += mm(rows, l === 0 ? inputDim : H, 4 * H);
  const lstmRecurrent = h.layers * mm(rows, H, 4 * H);
  // Block-local attention: each query scores 2W keys (the previous block and its own).
  const attention = 3 * mm(rows, H, A) + mm(rows, A, 2 * W) + mm(rows, 2 * W, A);
  const sharedHead = mm(rows, H + A, h.headDim);
  const [dt, pitch, dur, vel] = HEAD_SIZES;
  const outputHeads = mm(headRows, h.headDim, dt + pitch + dur + vel) + mm(headRows, dt + pitch, h.headDim);
  return sum({ lstmInput, lstmRecurrent, attention, sharedHead, outputHeads });
}

/** FLOPs of the backward pass that goes with forwardFlops (see the file comment). */
export function backwardFlops(h: Hyperparameters, inputDim: number, B: number, T: number, headRows = B * T): FlopBreakdown {
  const f = forwardFlops(h, inputDim, B, T, headRows);
  const H = h.hidden;
  const [dt, pitch] = HEAD_SIZES;
  const embeddings = mm(headRows, dt + pitch, h.headDim);
  // Layer 0's input is data: only dW. Deeper layers also pass the gradient down.
  let lstmInput = mm(B * T, inputDim, 4 * H);
  for (let l = 1; l < h.layers; l++) lstmInput += 2 * mm(B * T, H, 4 * H);
  // Step 0 multiplies the zero initial state: only dW there.
  const lstmRecurrent = h.layers * (2 * mm(B * (T - 1), H, 4 * H) + mm(B, H, 4 * H));
  return sum({
    lstmInput,
    lstmRecurrent,
    attention: 2 * f.attention,
    sharedHead: 2 * f.sharedHead,
    outputHeads: 2 * (f.outputHeads - embeddings) + embeddings,
  });
}

/** Forward + backward FLOPs of one training step. */
export function trainStepFlops(h: Hyperparameters, inputDim: number, B: number, T: number, headRows = B * T): { forward: FlopBreakdown; backward: FlopBreakdown; total: number } {
  const forward = forwardFlops(h, inputDim, B, T, headRows);
  const backward = backwardFlops(h, inputDim, B, T, headRows);
  return { forward, backward, total: forward.total + backward.total };
}

/** FLOPs of one stateful decoding step for B rows (attention over a ring of W outputs). */
export function stepFlops(h: Hyperparameters, inputDim: number, B: number): number {
  const H = h.hidden;
  const [dt, pitch, dur, vel] = HEAD_SIZES;
  let lstm = 0;
  for (let l = 0; l < h.layers; l++) lstm += mm(B, l === 0 ? inputDim : H, 4 * H) + mm(B, H, 4 * H);
  const attention = 3 * mm(B, H, h.attentionDim) + 2 * mm(B, h.attentionDim, h.attentionWindow);
  return lstm + attention + mm(B, H + h.attentionDim, h.headDim) + mm(B, h.headDim, dt + pitch + dur + vel) + mm(B, dt + pitch, h.headDim);
}
