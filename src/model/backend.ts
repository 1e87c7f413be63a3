/**
 * Picks the fastest TensorFlow.js backend that this machine has. On wasm it also registers the
 * kernel patches of src/model/wasmKernels/ (one file each), which take the backend's slow paths
 * off the hot loops of training and sampling.
 *
 * Order: tfjs-node-gpu, tfjs-node (both optional dependencies, absent here), wasm, cpu.
 */
import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { patchWasmKernels } from './wasmKernels/index.ts';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';
export const BACKEND_CHOICES = ['auto', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

let chosen: BackendName | undefined;

async function tryNative(): Promise<string | undefined> {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(pkg);
      if (await tf.setBackend('tensorflow')) return pkg;
    } catch {
      // not installed (the usual case here): try the next one
    }
  }
  return undefined;
}

async function tryWasm(): Promise<boolean> {
  try {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    const require = createRequire(import.meta.url);
    const dist = dirname(require.resolve('@tensorflow/tfjs-backend-wasm'));
    wasm.setWasmPaths(dist.endsWith('/') ? dist : `${dist}/`);
    // Threads are unavailable to wasm in Node; stay single-threaded on purpose.
    wasm.setThreadsCount(1);
    if (!(await tf.setBackend('wasm'))) return false;
    patchWasmKernels();
    return true;
  } catch {
    return false;
  }
}

/**
 * Initialise TensorFlow.js once. Returns the backend in use and logs it (unless quiet).
 * `choice` comes from `--backend`; 'auto' walks the preference order.
 */
export async function initBackend(choice: BackendChoice = 'auto', log: (line: string) => void = (l) => console.error(l)): Promise<BackendName> {
  if (chosen) return chosen;
  // The cpu backend greets Node users with a banner on first use; our log line says it better.
  const cpu = tf.findBackend('cpu') as { firstUse?: boolean } | null;
  if (cpu) cpu.firstUse = false;
  let detail = '';
  if (choice === 'auto' || choice === 'tensorflow') {
    const pkg = await tryNative();
    if (pkg) {
      chosen = 'tensorflow';
      detail = pkg;
    } else if (choice === 'tensorflow') {
      throw new Error('--backend tensorflow: neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node is installed');
    }
  }
  if (!chosen && (choice === 'auto' || choice === 'wasm')) {
    if (await tryWasm()) {
      chosen = 'wasm';
      detail = `@tensorflow/tfjs-backend-wasm (SIMD ${(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) ? 'on' : 'off'}, 1 thread)`;
    } else if (choice === 'wasm') {
      throw new Error('--backend wasm: @tensorflow/tfjs-backend-wasm failed to initialise');
    }
  }
  if (!chosen) {
    await tf.setBackend('cpu');
    chosen = 'cpu';
    detail = 'pure-JS cpu backend (slow)';
  }
  await tf.ready();
  log(`backend: ${chosen} — ${detail}`);
  return chosen;
}

export function currentBackend(): BackendName | undefined {
  return chosen;
}

/** Where the wasm binaries live (for diagnostics). */
export function wasmDistDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm')));
}
