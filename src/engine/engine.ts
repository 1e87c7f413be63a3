/**
 * The engine: a loaded model plus the compose pipeline (validate → sample → MIDI → audio →
 * piano roll). A class because it has a lifecycle: open (load weights) and dispose.
 */
import * as tf from '@tensorflow/tfjs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { initBackend, type BackendChoice } from '../model/backend.ts';
import { DATA_ATTRIBUTION, loadModelFolder, type ModelSpec } from '../model/folder.ts';
import type { Weights } from '../model/network.ts';
import { generateTokens, type SampleRequest } from '../model/sampling.ts';
import { parseMidi } from '../midi/read.ts';
import { writeMidi } from '../midi/write.ts';
import { renderAudio } from '../render/audio.ts';
import { renderPianoRoll } from '../render/pianoRoll.ts';
import { detokenize, tokenize, type NoteToken } from '../tokens/tokenize.ts';
import { ANY_COMPOSER, matchComposer, unknownComposerMessage } from './composers.ts';
import type { ComposeRequest, ComposeResult, ComposeStage, ModelInfo } from './types.ts';

export const NOTES_MIN = 16;
export const NOTES_MAX = 2000;
export const DEFAULT_TEMPERATURE = 1.0;
export const DEFAULT_TOP_P = 0.95;

/** A request the engine cannot honour as given: the message says what to change. */
export class ComposeInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ComposeInputError';
  }
}

interface ResolvedRequest {
  request: ComposeRequest;
  composer: string;
  sample: SampleRequest;
  tempoBpm: number;
}

export class Engine {
  private constructor(
    readonly spec: ModelSpec,
    private readonly weights: Weights,
    readonly modelDir: string,
  ) {}

  static async open(modelDir: string, backend: BackendChoice = 'auto', log: (line: string) => void = () => {}): Promise<Engine> {
    await initBackend(backend, log);
    const { spec, weights } = await loadModelFolder(modelDir);
    return new Engine(spec, weights, modelDir);
  }

  get composerNames(): string[] {
    return this.spec.composers.map((c) => c.name);
  }

  info(): ModelInfo {
    return {
      version: this.spec.version,
      composers: this.spec.composers.map((c) => ({ name: c.name, pieces: c.pieces })),
      metrics: this.spec.metrics,
      trainedAt: String(this.spec.training.startedAt ?? ''),
    };
  }

  /** Checks a request and turns it into a sampling request; throws ComposeInputError. */
  resolve(request: ComposeRequest): ResolvedRequest {
    const problems: string[] = [];
    const composer = matchComposer(request.composer, this.composerNames);
    if (!composer) problems.push(unknownComposerMessage(request.composer, this.composerNames));
    if (!Number.isInteger(request.notes) || request.notes < NOTES_MIN || request.notes > NOTES_MAX) problems.push(`notes must be a whole number from ${NOTES_MIN} to ${NOTES_MAX} (250 or 500 are typical), got ${request.notes}`);
    const temperature = request.temperature ?? DEFAULT_TEMPERATURE;
    if (!Number.isFinite(temperature) || temperature < 0 || temperature > 5) problems.push(`temperature must be between 0 and 5 (1.0 is the model's own distribution, 0 is greedy), got ${temperature}`);
    const topP = request.topP ?? DEFAULT_TOP_P;
    if (!Number.isFinite(topP) || topP <= 0 || topP > 1) problems.push(`top-p must be in (0, 1], got ${topP}`);
    const randomSeed = request.randomSeed ?? Math.floor(Math.random() * 2 ** 31);
    if (!Number.isInteger(randomSeed) || randomSeed < 0 || randomSeed >= 2 ** 32) problems.push(`random seed must be a whole number from 0 to 4294967295, got ${randomSeed}`);
    let primer: NoteToken[] | undefined;
    let seedTempo: number | undefined;
    if (request.seedMidi) {
      try {
        const piece = parseMidi(request.seedMidi, 'seed MIDI');
        primer = tokenize(piece.notes);
        seedTempo = piece.tempoBpm;
      } catch (e) {
        problems.push((e as Error).message);
      }
    }
    if (problems.length) throw new ComposeInputError(problems.join('; '));
    const index = composer === ANY_COMPOSER ? this.spec.composers.length : this.composerNames.indexOf(composer!);
    const tempoBpm = seedTempo ?? (composer === ANY_COMPOSER ? 100 : this.spec.composers[index].tempoBpm);
    return {
      request,
      composer: composer === ANY_COMPOSER ? ANY_COMPOSER : composer!,
      sample: { composer: index, notes: request.notes, temperature, topP, randomSeed, primer },
      tempoBpm,
    };
  }

  /** Samples the notes of several requests in one batched pass (no files written). */
  sample(resolved: ResolvedRequest[]): NoteToken[][] {
    return generateTokens(this.weights, this.spec.hyperparameters, this.spec.composers.length, resolved.map((r) => r.sample));
  }

  /**
   * Composes several requests together: one sampling pass for all, then each is written and
   * rendered. Invalid requests reject on their own without failing the others.
   */
  async composeMany(requests: ComposeRequest[], onStage: (index: number, stage: ComposeStage) => void = () => {}): Promise<PromiseSettledResult<ComposeResult>[]> {
    const started = performance.now();
    const resolved: (ResolvedRequest | Error)[] = requests.map((r) => {
      try {
        return this.resolve(r);
      } catch (e) {
        return e as Error;
      }
    });
    const valid = resolved.filter((r): r is ResolvedRequest => !(r instanceof Error));
    valid.forEach((r) => onStage(requests.indexOf(r.request), 'composing'));
    const tokens = valid.length ? this.sample(valid) : [];
    return Promise.allSettled(
      resolved.map(async (r, i) => {
        if (r instanceof Error) throw r;
        onStage(i, 'rendering');
        const result = await this.write(r, tokens[valid.indexOf(r)], started);
        onStage(i, 'done');
        return result;
      }),
    );
  }

  async compose(request: ComposeRequest, onStage?: (stage: ComposeStage) => void): Promise<ComposeResult> {
    const [result] = await this.composeMany([request], (_, s) => onStage?.(s));
    if (result.status === 'rejected') throw result.reason;
    return result.value;
  }

  private async write(r: ResolvedRequest, tokens: NoteToken[], started: number): Promise<ComposeResult> {
    const { request } = r;
    await mkdir(request.outDir, { recursive: true });
    const notes = detokenize(tokens, r.tempoBpm);
    const format = request.audio?.format ?? 'wav';
    const midiPath = join(request.outDir, 'piece.mid');
    const audioPath = join(request.outDir, `piece.${format}`);
    const pngPath = join(request.outDir, 'piece.png');
    const p = r.sample;
    const title = `nocturne: ${r.composer === ANY_COMPOSER ? 'any style' : `in the style of ${r.composer}`}`;
    await writeMidi(midiPath, notes, r.tempoBpm, {
      title,
      comment: `model ${this.spec.version}; notes ${p.notes}; temperature ${p.temperature}; top-p ${p.topP}; random seed ${p.randomSeed}${p.primer ? '; continued from a seed MIDI' : ''}`,
      copyright: DATA_ATTRIBUTION,
    });
    await renderAudio(midiPath, audioPath, { format, sampleRate: request.audio?.sampleRate, channels: request.audio?.channels });
    await renderPianoRoll(notes, pngPath, { title: `${title} — ${p.notes} notes, seed ${p.randomSeed}` });
    const last = notes.reduce((m, n) => Math.max(m, n.startSeconds + n.durationSeconds), 0);
    return {
      midiPath,
      audioPath,
      pngPath,
      noteCount: notes.length,
      composer: r.composer,
      modelVersion: this.spec.version,
      seconds: (performance.now() - started) / 1000,
      musicSeconds: last,
      params: { temperature: p.temperature, topP: p.topP, randomSeed: p.randomSeed, notes: p.notes, seeded: p.primer !== undefined, format },
    };
  }

  dispose(): void {
    tf.dispose(Object.values(this.weights));
  }
}
