/**
 * The wasm backend's kernel patches, one file each: every patched kernel gives the same
 * results as the stock one (bit for bit, but Tanh's rounding) and only moves less data or takes
 * a faster path. `patchWasmKernels` registers them all, once, after the wasm backend is set.
 */
import { patchBatchMatMul } from './batchMatMul.ts';
import { patchIdentity } from './identity.ts';
import { patchSlice } from './slice.ts';
import { patchSplitV } from './splitV.ts';
import { patchSum } from './sum.ts';
import { patchTanh } from './tanh.ts';
import { patchUnpack } from './unpack.ts';

let patched = false;

export function patchWasmKernels(): void {
  if (patched) return;
  patched = true;
  patchSlice();
  patchUnpack();
  patchIdentity();
  patchSplitV();
  patchSum();
  patchTanh();
  patchBatchMatMul();
}
