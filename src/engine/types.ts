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

/** Tempo range a request may ask for, in quarter notes per minute. */
export const TEMPO_MIN_BPM = 30;
export const TEMPO_MAX_BPM = 240;

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
  /** Key to write in: src/tokens/key.ts index 0..23 (0-11 major, 12-23 minor); absent = any key. */
  key?: number;
  /** Tempo in BPM, TEMPO_MIN_BPM..TEMPO_MAX_BPM; absent = the composer's (or the seed's) tempo. The MIDI and the audio follow it. */
  tempoBpm?: number;
  /** Also write the score: piece.musicxml and a picture of its first page, piece-score.png. */
  score?: boolean;
  /** With seedMidi: the seed's own notes open the piece written (MIDI, audio, piano roll, score); otherwise only the new notes. */
  includeSeed?: boolean;
}

export interface ComposeResult {
  midiPath: string;
  audioPath: string;
  pngPath: string;
  /** piece.musicxml, when the request asked for the score. */
  scorePath?: string;
  /** piece-score.png, the score's first page, when the request asked for the score. */
  scorePicturePath?: string;
  noteCount: number;
  composer: string;
  modelVersion: string;
  /** Wall-clock seconds for the whole request. */
  seconds: number;
  /** Duration of the music in seconds. */
  musicSeconds: number;
  params: {
    temperature: number;
    topP: number;
    /** The whole decoding, per-head settings and guidance included ("temperature 1, top-p 1 (per head: dt 0.85/1), composer guidance 2.5"). */
    decoding: string;
    randomSeed: number;
    notes: number;
    seeded: boolean;
    format: AudioFormat;
    /** The key written in ("D minor"), or "any". */
    key: string;
    /** Set when the model has no key input and the piece was transposed to the requested tonic instead (the mode cannot change). */
    keyNote?: string;
    /** The key the notes read as (Krumhansl–Schmuckler, src/tokens/key.ts): for "any", the key the score is written in. */
    estimatedKey: string;
    /** Tempo of the MIDI and the audio, BPM. */
    tempoBpm: number;
    /** With includeSeed: how many of the piece's notes, at its start, are the seed's. */
    seedNotes?: number;
  };
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
