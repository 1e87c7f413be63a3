/**
 * `nocturne check FILE...`: a verdict per MIDI file (ok / unacceptable / unreadable) and an exit
 * code. Never throws and never prints a stack trace: every failure becomes a one-line reason.
 *
 * Parsing is synchronous and cannot be interrupted, so its time bound comes from the caps in
 * read.ts: the file size is capped before it is read, and the scanner is a single linear pass over
 * at most that many bytes (no step can revisit data or loop without consuming input), so a 2 MB
 * file takes tens of milliseconds whatever its content.
 */
import { MidiInputError, formatDuration, parseMidi, readMidiFile, type MidiLimits } from './read.ts';
import type { PianoPiece } from './types.ts';

export interface MidiVerdict {
  file: string;
  status: 'ok' | 'unacceptable' | 'unreadable';
  reason?: string;
  notes?: number;
  durationSeconds?: number;
}

function okVerdict(file: string, piece: PianoPiece): MidiVerdict {
  return { file, status: 'ok', notes: piece.notes.length, durationSeconds: piece.durationSeconds };
}

function failedVerdict(file: string, e: unknown): MidiVerdict {
  if (e instanceof MidiInputError) return { file, status: e.kind, reason: e.reason };
  // Not expected (parseMidi/readMidiFile only throw MidiInputError), but a verdict all the same.
  const message = e instanceof Error ? e.message : String(e);
  return { file, status: 'unreadable', reason: `internal error: ${message.split('\n')[0]}` };
}

/** Verdict for a MIDI file held in memory. Never throws. */
export function checkMidiBytes(bytes: Uint8Array, name: string, limits?: Partial<MidiLimits>): MidiVerdict {
  try {
    return okVerdict(name, parseMidi(bytes, name, limits));
  } catch (e) {
    return failedVerdict(name, e);
  }
}

/** Verdict for a MIDI file on disk. Never rejects. */
export async function checkMidiFile(path: string, limits?: Partial<MidiLimits>): Promise<MidiVerdict> {
  try {
    return okVerdict(path, await readMidiFile(path, limits));
  } catch (e) {
    return failedVerdict(path, e);
  }
}

/** One line for a verdict: status padded to a column, the file, then details or the reason. */
export function formatVerdict(v: MidiVerdict): string {
  const detail =
    v.status === 'ok'
      ? `solo piano, ${v.notes ?? 0} notes, ${formatDuration(v.durationSeconds ?? 0)}`
      : (v.reason ?? v.status);
  return `${v.status.padEnd(12)} ${v.file}  ${detail}`.replace(/[\r\n]+/g, ' ');
}

export const CHECK_USAGE = [
  'usage: nocturne check FILE.mid [FILE.mid ...]',
  'Checks that each file is a readable solo-piano MIDI file the bot can learn from or reply to.',
  'Exit code: 0 all ok, 1 some unacceptable (e.g. drums, other instruments), 2 some unreadable.',
];

/**
 * Checks each file in turn, printing one line per file. Returns the exit code: 0 if all are ok,
 * 1 if any is unacceptable and none unreadable, 2 if any is unreadable or no file was given.
 */
export async function runCheck(
  files: string[],
  print: (line: string) => void,
  limits?: Partial<MidiLimits>,
): Promise<number> {
  const say = (line: string): void => {
    try {
      print(line);
    } catch {
      // A broken output stream must not turn into a stack trace.
    }
  };
  if (files.length === 0) {
    for (const line of CHECK_USAGE) say(line);
    return 2;
  }
  let unacceptable = false;
  let unreadable = false;
  for (const file of files) {
    const verdict = await checkMidiFile(file, limits);
    if (verdict.status === 'unacceptable') unacceptable = true;
    if (verdict.status === 'unreadable') unreadable = true;
    say(formatVerdict(verdict));
  }
  return unreadable ? 2 : unacceptable ? 1 : 0;
}
