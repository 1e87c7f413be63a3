/**
 * The engine's public face, as seen by commands/ and the chat adapters.
 * Nothing here mentions tensors: front ends only ever see these plain objects.
 */

/** The audio formats a piece can be written in (src/render/audio.ts); WAV is the default. */
export const AUDIO_FORMATS = ['wav', 'ogg', 'mp3', 'opus'] as const;
export type AudioFormat = (typeof AUDIO_FORMATS)[number];

/** Highest sampling temperature a request may ask for (0 is greedy, 1.0 the model's own distribution). */
export const TEMPERATURE_MAX = 5;
/** Highest random seed (seeds are 32-bit: 0 to 2³² − 1). */
export const RANDOM_SEED_MAX = 2 ** 32 - 1;

/** Longest piece composed unless a request says otherwise (NOCTURNE_MAX_MUSIC_MINUTES): about 320 MB of stereo WAV. */
export const MUSIC_MAX_SECONDS = 30 * 60;

export interface AudioOptions {
  /** wav (default; 16-bit PCM), ogg (Vorbis), mp3 or opus: all loudness-normalised alike (about −16 LUFS, true peak ≤ −1 dBTP). */
  format: AudioFormat;
  /** 44100 (default) or 22050. */
  sampleRate?: number;
  /** 2 (default) or 1. */
  channels?: 1 | 2;
}

export interface ComposeRequest {
  /** Composer label as the model knows it (case-insensitive match is the caller's job). */
  composer: string;
  /** Number of notes to write, 16..2000. A chord of three counts as three. */
  notes: number;
  /** Softmax temperature, > 0 (default 1.0). */
  temperature?: number;
  /** Nucleus sampling mass in (0, 1] (default 0.95). */
  topP?: number;
  /** Random seed; the same seed and parameters give the same notes. */
  randomSeed?: number;
  /** Optional seed MIDI to continue (raw bytes). */
  seedMidi?: Uint8Array;
  /** Where the files go (created if missing). */
  outDir: string;
  /** Longest music accepted, in seconds (default MUSIC_MAX_SECONDS, 30 minutes): a longer piece is refused before it is written or rendered. */
  maxMusicSeconds?: number;
  audio?: AudioOptions;
}

export interface ComposeResult {
  midiPath: string;
  audioPath: string;
  pngPath: string;
  noteCount: number;
  composer: string;
  modelVersion: string;
  /** Wall-clock seconds for the whole request. */
  seconds: number;
  /** Duration of the music in seconds. */
  musicSeconds: number;
  params: { temperature: number; topP: number; randomSeed: number; notes: number; seeded: boolean; format: AudioFormat };
}

export type ComposeStage = 'composing' | 'rendering' | 'done';

export interface ComposerInfo {
  name: string;
  /** Pieces of this composer in the training data. */
  pieces: number;
}

export interface ModelInfo {
  version: string;
  composers: ComposerInfo[];
  metrics: Record<string, number>;
  trainedAt: string;
}
