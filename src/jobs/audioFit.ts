/**
 * Fitting a piece's files under a platform's upload limit (Discord: the attachment_size_limit each
 * interaction carries, 10 MiB unless the server is boosted, for one message's files together).
 *
 * The files of one post share the limit (fitUploads): the MIDI, the piano roll and, when the
 * score was asked for, its picture and MusicXML go first, in that order, each if it still fits;
 * the audio gets what is left, and only the audio is made smaller to fit (fitAudio). What does
 * not fit is left out, and the post says so.
 *
 * The product sends WAV. When the stereo 44.1 kHz WAV is over the limit, the piece is rendered
 * again as mono 22.05 kHz WAV (about 2.6 MB per minute); when that would still be over, the WAV
 * is encoded as OGG (about 1 MB per minute; fluidsynth does not run again), and the message says so. If even the OGG is over, the audio is left out
 * and the message points to the MIDI. The oversized files are deleted. An MP3, Opus or OGG piece
 * over the limit is rendered again in its own format at lower bitrates (FIT_LADDER in
 * src/render/audio.ts) until one fits.
 */
import { stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describeAudioBudget, readWavHeader, renderAudio, renderAudioWithin } from '../render/audio.ts';

export interface FittedAudio {
  /** The file to send, or undefined when no audio fits. */
  audioPath?: string;
  /** One line for the user when the audio is not the plain WAV, else undefined. */
  note?: string;
}

export function formatMegabytes(bytes: number): string {
  return `${(bytes / 1_000_000).toFixed(bytes < 10_000_000 ? 1 : 0)} MB`;
}

/** The kinds of file a post carries, in the order the upload fitting keeps them; the audio, which can be made smaller, last. */
export const UPLOAD_ORDER = ['midi', 'image', 'score-picture', 'score', 'audio'] as const;
export type UploadKind = (typeof UPLOAD_ORDER)[number];

/**
 * Which of one post's files go up together under `limitBytes` (their sizes summed): taken in
 * UPLOAD_ORDER, each that still fits is kept, the others are left out. `room` is what the kept
 * ones leave. Without a limit, every file is kept.
 */
export function fitUploads<T extends { kind: UploadKind; bytes: number }>(files: readonly T[], limitBytes: number | undefined): { kept: T[]; leftOut: T[]; room: number } {
  const ordered = [...files].sort((a, b) => UPLOAD_ORDER.indexOf(a.kind) - UPLOAD_ORDER.indexOf(b.kind));
  if (limitBytes === undefined) return { kept: ordered, leftOut: [], room: Infinity };
  const kept: T[] = [];
  const leftOut: T[] = [];
  let room = limitBytes;
  for (const f of ordered) {
    if (f.bytes <= room) {
      kept.push(f);
      room -= f.bytes;
    } else leftOut.push(f);
  }
  return { kept, leftOut, room };
}

/**
 * Returns the audio to send for a piece whose audio is at `audioPath` (rendered from `midiPath`),
 * re-rendering smaller when it is over `limitBytes`. Without a limit, the file as it is.
 * `limitText` names the limit in the note ("the 10 MB upload limit", the default).
 */
export async function fitAudio(midiPath: string, audioPath: string, limitBytes: number | undefined, limitText?: string): Promise<FittedAudio> {
  if (limitBytes === undefined) return { audioPath };
  const bytes = (await stat(audioPath)).size;
  if (bytes <= limitBytes) return { audioPath };
  const limit = limitText ?? `the ${formatMegabytes(limitBytes)} upload limit`;
  const dir = dirname(audioPath);
  const isWav = audioPath.endsWith('.wav');
  if (isWav) {
    const { seconds } = await readWavHeader(audioPath);
    if (describeAudioBudget(seconds, 'wav', 22050, 1) <= limitBytes) {
      const small = join(dir, 'piece-mono-22k.wav');
      await renderAudio(midiPath, small, { format: 'wav', sampleRate: 22050, channels: 1 });
      if ((await stat(small)).size <= limitBytes) {
        await unlink(audioPath).catch(() => undefined);
        return { audioPath: small, note: `audio is mono 22.05 kHz WAV: the stereo WAV would be ${formatMegabytes(bytes)}, over ${limit}` };
      }
      await unlink(small).catch(() => undefined);
    }
    const ogg = join(dir, 'piece.ogg');
    // encoded from the WAV already rendered (and normalised), not rendered again
    await renderAudio(midiPath, ogg, { format: 'ogg', source: audioPath });
    const oggBytes = (await stat(ogg)).size;
    if (oggBytes <= limitBytes) {
      await unlink(audioPath).catch(() => undefined);
      return { audioPath: ogg, note: `audio is OGG: even mono WAV would be over ${limit} for a piece this long` };
    }
    await unlink(ogg).catch(() => undefined);
  }
  // MP3, Opus, OGG: the same format at a lower bitrate (then mono, then 22.05 kHz), in place.
  const lossy = /\.(mp3|opus|ogg)$/.exec(audioPath)?.[1] as 'mp3' | 'opus' | 'ogg' | undefined;
  if (lossy) {
    const r = await renderAudioWithin(midiPath, audioPath, lossy, limitBytes, {}, 1);
    if (r) return { audioPath, note: `audio is ${lossy.toUpperCase()} at ${r.bitrateKbps} kbit/s${r.channels === 1 ? ' mono' : ''}: at its usual bitrate it would be ${formatMegabytes(bytes)}, over ${limit}` };
  }
  await unlink(audioPath).catch(() => undefined);
  return { note: `no audio: the piece is too long for ${limit} even as ${lossy ? `${lossy.toUpperCase()} at its lowest bitrate` : 'OGG'} (${formatMegabytes(bytes)}); play the MIDI file instead, or ask for fewer notes` };
}
