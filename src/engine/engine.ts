/**
 * The engine: a loaded model plus the compose pipeline (validate → sample → MIDI → audio →
 * piano roll). A class because it has a lifecycle: open (load weights) and dispose.
 */
import * as tf from '@tensorflow/tfjs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { initBackend, type BackendChoice } from '../model/backend.ts';
import { modelAttribution } from '../model/folder.ts';
import { loadModelFolder, type ModelSpec } from '../model/note/folder.ts';
import type { Weights } from '../model/layers.ts';
import { describeRequestDecoding, disposePreparedDecoder, generateTokens, prepareDecoder, type PreparedDecoder, type SampleRequest } from '../model/note/sampling.ts';
import { seededRandom } from '../model/random.ts';
import { formatDuration, parseMidi } from '../midi/read.ts';
import { writeMidi } from '../midi/write.ts';
import { RELEASE_TAIL_SECONDS, describeAudioBudget, renderAudio } from '../render/audio.ts';
import type { PianoNote } from '../midi/types.ts';
import { unlink } from 'node:fs/promises';
import { renderPianoRoll } from '../render/pianoRoll.ts';
import { scoreToMusicXml } from '../render/score.ts';
import { renderScorePicture } from '../render/scorePicture.ts';
import { ANY_KEY, KEY_COUNT, KEYS, estimateKey, keyName, transposeKey } from '../tokens/key.ts';
import { PITCH_MAX, PITCH_MIN } from '../tokens/tokenize.ts';
import { detokenize, tokenize, type NoteToken } from '../tokens/tokenize.ts';
import { ANY_COMPOSER, matchComposer, unknownComposerMessage } from './composers.ts';
import { AUDIO_FORMATS, MUSIC_MAX_SECONDS, RANDOM_SEED_MAX, TEMPERATURE_MAX, TEMPO_MAX_BPM, TEMPO_MIN_BPM, type AudioFormat, type ComposeRequest, type ComposeResult, type ComposeStage, type ModelInfo } from './types.ts';

export { MUSIC_MAX_SECONDS };

export const NOTES_MIN = 16;
export const NOTES_MAX = 2000;
export const DEFAULT_TEMPERATURE = 1.0;
export const DEFAULT_TOP_P = 0.95;
/**
 * Seed tempi a continuation accepts (it keeps the seed's tempo). The training pieces' median tempi
 * run from 27 to 245 BPM; a 356-byte seed at 3.58 BPM made 2000 notes last hours (1.2 GB of WAV).
 */
export const SEED_TEMPO_MIN_BPM = 20;
export const SEED_TEMPO_MAX_BPM = 1000;
/** Mixed into a request's random seed for its velocity draws, so that they differ from the sampler's. */
const VELOCITY_SEED_SALT = 0x5ee1;

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
  maxMusicSeconds: number;
  /** Requested key index, ANY_KEY when none. */
  key: number;
  /** The model has no key input: transpose the result to the requested tonic (transposeToTonic). */
  transposeFallback: boolean;
  /** includeSeed: the seed's notes that open the piece written (0: only the new notes). */
  seedNotes: number;
}

/**
 * The fallback for a model without a key input: the notes moved by the smallest interval (−5..+6
 * semitones) that takes their estimated tonic to `tonic`; a note that would leave the piano moves
 * an octave back. The mode is the piece's own: transposition cannot change it.
 */
export function transposeToTonic(tokens: readonly NoteToken[], tonic: number): { tokens: NoteToken[]; from: number; to: number } {
  const from = estimateKey(tokens);
  const up = (((tonic - from.tonic) % 12) + 12) % 12;
  const shift = up > 6 ? up - 12 : up;
  const moved = tokens.map((t) => {
    let pitch = t.pitch + shift;
    if (pitch > PITCH_MAX) pitch -= 12;
    if (pitch < PITCH_MIN) pitch += 12;
    return { ...t, pitch };
  });
  return { tokens: moved, from: from.index, to: transposeKey(from.index, shift) };
}

/** The key a piece is written in, and why when it is not the model's own doing. */
interface KeyWritten {
  key: number;
  note?: string;
}

export class Engine {
  private constructor(
    readonly spec: ModelSpec,
    private readonly weights: Weights,
    readonly modelDir: string,
    /** The host-side decoder, made once at open rather than on every sampling pass. */
    private readonly decoder: PreparedDecoder | undefined,
  ) {}

  static async open(modelDir: string, backend: BackendChoice = 'auto', log: (line: string) => void = () => {}): Promise<Engine> {
    await initBackend(backend, log);
    const { spec, weights } = await loadModelFolder(modelDir);
    return new Engine(spec, weights, modelDir, prepareDecoder(weights, spec.hyperparameters));
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
    // The model's own decoding applies while the request leaves both knobs alone; a request's
    // temperature or top-p applies to every head.
    const modelDecoding = request.temperature === undefined && request.topP === undefined ? this.spec.decoding : undefined;
    const temperature = request.temperature ?? this.spec.decoding?.temperature ?? DEFAULT_TEMPERATURE;
    if (!Number.isFinite(temperature) || temperature < 0 || temperature > TEMPERATURE_MAX) problems.push(`temperature must be between 0 and ${TEMPERATURE_MAX} (1.0 is the model's own distribution, 0 is greedy), got ${temperature}`);
    const topP = request.topP ?? this.spec.decoding?.topP ?? DEFAULT_TOP_P;
    if (!Number.isFinite(topP) || topP <= 0 || topP > 1) problems.push(`top-p must be in (0, 1], got ${topP}`);
    const randomSeed = request.randomSeed ?? Math.floor(Math.random() * 2 ** 31);
    if (!Number.isInteger(randomSeed) || randomSeed < 0 || randomSeed > RANDOM_SEED_MAX) problems.push(`random seed must be a whole number from 0 to ${RANDOM_SEED_MAX}, got ${randomSeed}`);
    const format = request.audio?.format ?? 'wav';
    if (!AUDIO_FORMATS.includes(format)) problems.push(`audio format must be ${AUDIO_FORMATS.join(', ')}, got ${JSON.stringify(format)}`);
    const maxMusicSeconds = request.maxMusicSeconds ?? MUSIC_MAX_SECONDS;
    if (!(maxMusicSeconds > 0)) problems.push(`the music length limit must be positive, got ${maxMusicSeconds}`);
    const key = request.key ?? ANY_KEY;
    if (!(Number.isInteger(key) && key >= 0 && key <= ANY_KEY)) problems.push(`key must be one of the 24 major and minor keys (index 0 to ${KEY_COUNT - 1}, e.g. "D minor"), or any, got ${request.key}`);
    if (request.tempoBpm !== undefined && !(Number.isFinite(request.tempoBpm) && request.tempoBpm >= TEMPO_MIN_BPM && request.tempoBpm <= TEMPO_MAX_BPM)) problems.push(`tempo must be ${TEMPO_MIN_BPM} to ${TEMPO_MAX_BPM} BPM, got ${request.tempoBpm}`);
    let primer: NoteToken[] | undefined;
    let seedTempo: number | undefined;
    if (request.seedMidi) {
      try {
        const piece = parseMidi(request.seedMidi, 'seed MIDI');
        primer = tokenize(piece.notes);
        seedTempo = piece.tempoBpm;
        if (request.tempoBpm === undefined && !(seedTempo >= SEED_TEMPO_MIN_BPM && seedTempo <= SEED_TEMPO_MAX_BPM)) {
          problems.push(`the seed MIDI's tempo is ${seedTempo.toPrecision(3)} BPM; a continuation keeps it, so it must be ${SEED_TEMPO_MIN_BPM} to ${SEED_TEMPO_MAX_BPM} BPM: fix the tempo in the file or ask for a tempo`);
        }
      } catch (e) {
        problems.push((e as Error).message);
      }
    }
    if (problems.length) throw new ComposeInputError(problems.join('; '));
    const index = composer === ANY_COMPOSER ? this.spec.composers.length : this.composerNames.indexOf(composer!);
    const tempoBpm = request.tempoBpm ?? seedTempo ?? (composer === ANY_COMPOSER ? 100 : this.spec.composers[index].tempoBpm);
    const keyInput = this.spec.hyperparameters.keys === true;
    return {
      request,
      composer: composer === ANY_COMPOSER ? ANY_COMPOSER : composer!,
      sample: { composer: index, notes: request.notes, temperature, topP, heads: modelDecoding?.heads, key: keyInput && key !== ANY_KEY ? key : undefined, keyGuidance: this.spec.decoding?.keyGuidance, composerGuidance: this.spec.decoding?.composerGuidance, randomSeed, primer },
      tempoBpm,
      maxMusicSeconds,
      key,
      transposeFallback: !keyInput && key !== ANY_KEY,
      seedNotes: request.includeSeed && primer ? primer.length : 0,
    };
  }

  /** Samples the notes of several requests in one batched pass (no files written). */
  sample(resolved: ResolvedRequest[]): NoteToken[][] {
    return generateTokens(this.weights, this.spec.hyperparameters, this.spec.composers.length, resolved.map((r) => r.sample), this.decoder);
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
        // The length is known once the notes are: refuse before anything is written or rendered.
        // Velocities spread inside their buckets, drawn from the request's own seed (reproducible).
        const velocityDraws = seededRandom(r.sample.randomSeed ^ VELOCITY_SEED_SALT);
        // includeSeed: the seed's notes (as the model read them) open the piece, the new ones follow on.
        const { seedNotes } = r;
        let pieceTokens = seedNotes ? [...r.sample.primer!, ...tokens[valid.indexOf(r)]] : tokens[valid.indexOf(r)];
        let written: KeyWritten = { key: r.key };
        if (r.transposeFallback) {
          const moved = transposeToTonic(pieceTokens, KEYS[r.key].tonic);
          pieceTokens = moved.tokens;
          written = { key: moved.to, note: `this model has no key input: the piece was transposed from ${keyName(moved.from)} to ${keyName(moved.to)}; transposition cannot change the mode` };
        }
        const notes = detokenize(pieceTokens, r.tempoBpm, 0, () => velocityDraws.next());
        const musicSeconds = notes.reduce((m, n) => Math.max(m, n.startSeconds + n.durationSeconds), 0);
        if (musicSeconds > r.maxMusicSeconds) {
          throw new ComposeInputError(`${r.sample.notes} notes${seedNotes ? ` after the seed's ${seedNotes}` : ''} at ${r.tempoBpm.toPrecision(3)} BPM would last ${formatDuration(musicSeconds)}, over the limit of ${formatDuration(r.maxMusicSeconds)} of music: ask for fewer notes${r.sample.primer ? ' or use a faster seed' : ''}`);
        }
        onStage(i, 'rendering');
        const result = await this.write(r, notes, pieceTokens, written, started);
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

  /** Writes the MIDI, audio and piano roll; on failure removes whichever of them it wrote. */
  private async write(r: ResolvedRequest, notes: PianoNote[], tokens: NoteToken[], written: KeyWritten, started: number): Promise<ComposeResult> {
    const { request } = r;
    await mkdir(request.outDir, { recursive: true });
    const format = request.audio?.format ?? 'wav';
    const midiPath = join(request.outDir, 'piece.mid');
    const audioPath = join(request.outDir, `piece.${format}`);
    const pngPath = join(request.outDir, 'piece.png');
    const scorePath = request.score ? join(request.outDir, 'piece.musicxml') : undefined;
    const scorePicturePath = request.score ? join(request.outDir, 'piece-score.png') : undefined;
    try {
      return await this.writeFiles(r, notes, tokens, written, started, { format, midiPath, audioPath, pngPath, scorePath, scorePicturePath });
    } catch (e) {
      await Promise.all([midiPath, audioPath, pngPath, scorePath, scorePicturePath].filter((p): p is string => p !== undefined).map((p) => unlink(p).catch(() => undefined)));
      throw e;
    }
  }

  private async writeFiles(
    r: ResolvedRequest,
    notes: PianoNote[],
    tokens: NoteToken[],
    written: KeyWritten,
    started: number,
    paths: { format: AudioFormat; midiPath: string; audioPath: string; pngPath: string; scorePath?: string; scorePicturePath?: string },
  ): Promise<ComposeResult> {
    const { request } = r;
    const { format, midiPath, audioPath, pngPath, scorePath, scorePicturePath } = paths;
    const p = r.sample;
    const title = `nocturne: ${r.composer === ANY_COMPOSER ? 'any style' : `in the style of ${r.composer}`}`;
    // The training data's credit, as the loaded model's folder states it (the licence asks for it on every piece).
    const attribution = modelAttribution(this.spec);
    const decoding = describeRequestDecoding(this.spec.hyperparameters, this.spec.composers.length, p);
    await writeMidi(midiPath, notes, r.tempoBpm, {
      title,
      comment: `model ${this.spec.version}; notes ${p.notes}; ${decoding}; random seed ${p.randomSeed}; key ${keyName(written.key)}${p.primer ? `; continued from a seed MIDI${r.seedNotes ? `, whose ${r.seedNotes} notes open it` : ''}` : ''}`,
      copyright: attribution,
    });
    // The audio's size is bounded by the length limit; renderAudio checks its estimate before running fluidsynth.
    const sampleRate = request.audio?.sampleRate;
    const channels = request.audio?.channels;
    const maxBytes = describeAudioBudget(r.maxMusicSeconds + RELEASE_TAIL_SECONDS, format, sampleRate, channels);
    await renderAudio(midiPath, audioPath, { format, sampleRate, channels, maxBytes });
    await renderPianoRoll(notes, pngPath, { title: `${title} — ${p.notes} notes, seed ${p.randomSeed}` });
    if (scorePath && scorePicturePath) {
      // The same tokens as the MIDI; the key signature is the requested key (estimated for "any").
      const xml = scoreToMusicXml({ tokens, tempoBpm: r.tempoBpm, key: written.key, title, composer: `nocturne ${this.spec.version}, random seed ${p.randomSeed}`, attribution });
      await writeFile(scorePath, xml);
      await writeFile(scorePicturePath, await renderScorePicture(xml));
    }
    const last = notes.reduce((m, n) => Math.max(m, n.startSeconds + n.durationSeconds), 0);
    return {
      midiPath,
      audioPath,
      pngPath,
      ...(scorePath ? { scorePath, scorePicturePath } : {}),
      noteCount: notes.length,
      composer: r.composer,
      modelVersion: this.spec.version,
      seconds: (performance.now() - started) / 1000,
      musicSeconds: last,
      params: { temperature: p.temperature, topP: p.topP, decoding, randomSeed: p.randomSeed, notes: p.notes, seeded: p.primer !== undefined, format, key: keyName(written.key), ...(written.note ? { keyNote: written.note } : {}), estimatedKey: estimateKey(tokens).name, tempoBpm: r.tempoBpm, ...(r.seedNotes ? { seedNotes: r.seedNotes } : {}) },
    };
  }

  dispose(): void {
    disposePreparedDecoder(this.decoder);
    tf.dispose(Object.values(this.weights));
  }
}
