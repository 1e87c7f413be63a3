/**
 * Fenced MIDI input: every byte of a Standard MIDI File is validated by a bounded scanner here
 * before anything is built from it, and every failure is a MidiInputError with a human reason.
 *
 * Why not just `new Midi(bytes)` from @tonejs/midi: its parser (midi-file) throws plain strings,
 * reads past the end of truncated data and returns junk instead of failing, trusts signed 32-bit
 * chunk lengths, and pairs note-ons with note-offs by a linear search per note, which is
 * quadratic: a 0.6 MB file of 10 000 never-released notes and 200 000 stray note-offs took it 7 s
 * (this module: 26 ms), and a 2 MB one would take over a minute. So the scanner that validates the
 * file also decodes it, in one linear pass, and notes are paired with per-key FIFO queues. On all
 * 315 piano-midi.de files the notes are identical to @tonejs/midi's (pitch, ticks, length,
 * velocity, seconds), except one zero-length note in muss_6.mid (see below); the test re-checks a
 * sample. @tonejs/midi is still used for the General MIDI instrument names.
 *
 * Decisions (documented because they change what the model sees):
 * - Notes are paired per track, channel and key, first-on first-off. A note-off with no sounding
 *   note is ignored (tonejs would pair it with a later note-on of the same key at the same tick,
 *   making a zero-length note and then stealing that note's real note-off).
 * - A note-on that is never released before its track ends is dropped (as tonejs does).
 * - A note released at the tick it starts is kept, lengthened to MIN_NOTE_BEATS (a 64th note): it
 *   was meant to sound (a grace or repeated note), and zero-length notes break duration tokens.
 * - Running status survives meta and sysex events (as in midi-file and most real files).
 * - Bytes after an End of Track event inside its chunk are ignored; so is all-zero padding after
 *   the last chunk. Only the first `ntrks` MTrk chunks are used; other chunk types are skipped.
 * - Format 2 files are accepted and read like format 1 (tracks overlaid from tick 0), except that
 *   programs are tracked per track.
 * - SMPTE (frames-per-second) time division is refused as 'unacceptable': beats are undefined.
 * - Before the first tempo event the tempo is 120 bpm (the SMF default).
 * - durationSeconds is the end of the last note, and tempoBpm the median over [0, that end]:
 *   events after the music do not count (mz_311_2.mid has a tempo event at 33:31, long after
 *   its last note at 4:38; metadata.csv's durations include such trailing events).
 * - A program change applies to its channel from its tick on, across all tracks (formats 0/1);
 *   it is refused only if a note is played on that channel while a non-piano program is in
 *   effect. Programs 0..7 (the GM piano family) are piano; the dataset uses 0 and 1.
 */
import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import tonejs from '@tonejs/midi';
import type { PianoNote, PianoPiece } from './types.ts';

export interface MidiLimits {
  /** Largest file accepted, in bytes. */
  maxBytes: number;
  /** Most notes accepted in one file. */
  maxNotes: number;
  /** Longest piece accepted, in seconds (end of the last note). */
  maxSeconds: number;
}

export const MIDI_LIMITS: Readonly<MidiLimits> = Object.freeze({
  maxBytes: 2 * 1024 * 1024,
  maxNotes: 30000,
  maxSeconds: 30 * 60,
});

export type MidiInputErrorKind = 'unreadable' | 'unacceptable';

/**
 * Why a file was refused. 'unreadable': not a well-formed MIDI file (missing, truncated, corrupt).
 * 'unacceptable': a well-formed MIDI file that is not a solo piano piece we take (drums, other
 * instruments, no notes, too big or too long).
 */
export class MidiInputError extends Error {
  readonly file: string;
  readonly reason: string;
  readonly kind: MidiInputErrorKind;
  constructor(file: string, reason: string, kind: MidiInputErrorKind) {
    super(`${file}: ${reason}`);
    this.name = 'MidiInputError';
    this.file = file;
    this.reason = reason;
    this.kind = kind;
  }
}

/** Shortest note kept, in beats: notes released at the tick they start are lengthened to this. */
export const MIN_NOTE_BEATS = 1 / 16;

const DEFAULT_USPB = 500_000; // 120 bpm
const DRUM_CHANNEL = 9;
const PIANO_PROGRAMS_END = 8; // GM programs 0..7 are the piano family

function resolveLimits(limits?: Partial<MidiLimits>): MidiLimits {
  return { ...MIDI_LIMITS, ...(limits ?? {}) };
}

/** Internal: thrown by the scanner, turned into a MidiInputError with the file name. */
class Refusal {
  constructor(
    readonly reason: string,
    readonly kind: MidiInputErrorKind,
  ) {}
}

const unreadable = (reason: string): never => {
  throw new Refusal(reason, 'unreadable');
};
const unacceptable = (reason: string): never => {
  throw new Refusal(reason, 'unacceptable');
};

const hex = (b: number): string => '0x' + b.toString(16).padStart(2, '0');

/** m:ss or h:mm:ss. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return String(seconds);
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const ss = String(s).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

function describeNotMidi(bytes: Uint8Array): string {
  const head = bytes.subarray(0, 64);
  if (head.length >= 4 && String.fromCharCode(...head.subarray(0, 4)) === 'RIFF') {
    return 'not a MIDI file (a RIFF container: RMID and WAV files are not supported)';
  }
  let printable = 0;
  for (const b of head) if ((b >= 0x20 && b < 0x7f) || b === 0x09 || b === 0x0a || b === 0x0d || b >= 0x80) printable++;
  if (printable === head.length) {
    const text = new TextDecoder('utf-8', { fatal: false })
      .decode(bytes.subarray(0, 24))
      .replace(/[\s\uFFFD]+/g, ' ')
      .trim();
    return `not a MIDI file (looks like text: ${JSON.stringify(text)})`;
  }
  const shown = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
  return `not a MIDI file (starts with bytes ${shown}, expected "MThd")`;
}

// ---------------------------------------------------------------------------------------------
// Scanning

interface TrackSpan {
  /** 1-based track number, for messages. */
  no: number;
  start: number;
  end: number;
}

interface RawNote {
  pitch: number;
  velocity: number;
  startTick: number;
  endTick: number;
}

interface ProgramChange {
  tick: number;
  program: number;
  /** Order in the file, to keep changes at the same tick in file order. */
  seq: number;
}

interface TempoChange {
  tick: number;
  uspb: number;
  seq: number;
}

/** A FIFO of sounding notes on one key: start ticks and velocities, with a moving head. */
interface KeyQueue {
  ticks: number[];
  velocities: number[];
  head: number;
}

interface ScanResult {
  notes: RawNote[];
  /** Key: channel (formats 0/1) or track * 16 + channel (format 2). Values: note-on ticks. */
  noteOnTicks: Map<number, number[]>;
  programs: Map<number, ProgramChange[]>;
  tempos: TempoChange[];
  drumNoteOns: number;
  droppedNoteOns: number;
}

function scanTracks(bytes: Uint8Array, tracks: readonly TrackSpan[], format: number): ScanResult {
  const result: ScanResult = {
    notes: [],
    noteOnTicks: new Map(),
    programs: new Map(),
    tempos: [],
    drumNoteOns: 0,
    droppedNoteOns: 0,
  };
  let seq = 0;

  for (const span of tracks) {
    const { no, end } = span;
    const where = (at: number): string => `track ${no}, byte ${at}`;
    const queues = new Map<number, KeyQueue>(); // channel * 128 + pitch
    let p = span.start;
    let tick = 0;
    let running = -1;

    /** A variable-length quantity of at most 4 bytes that must end inside the chunk. */
    const readVarLen = (what: string, at: number): number => {
      let value = 0;
      for (let n = 1; ; n++) {
        if (p >= end) unreadable(`${where(at)}: ${what} runs past the end of the track chunk`);
        const b = bytes[p++]!;
        value = value * 128 + (b & 0x7f);
        if ((b & 0x80) === 0) return value;
        if (n === 4) unreadable(`${where(at)}: ${what} is longer than 4 bytes`);
      }
    };

    // Every pass consumes at least 2 bytes, so this loop runs at most (chunk length / 2) times.
    while (p < end) {
      const at = p;
      tick += readVarLen('delta time', at);
      if (p >= end) unreadable(`${where(at)}: event is cut off after its delta time`);
      let status = bytes[p]!;
      if (status < 0x80) {
        if (running < 0) unreadable(`${where(p)}: data byte ${hex(status)} with no status byte before it`);
        status = running;
      } else {
        p++;
      }

      if (status < 0xf0) {
        running = status;
        const nData = (status & 0xe0) === 0xc0 ? 1 : 2; // program change, channel pressure: 1
        if (p + nData > end) unreadable(`${where(at)}: channel event runs past the end of the track chunk`);
        const d1 = bytes[p]!;
        const d2 = nData === 2 ? bytes[p + 1]! : 0;
        if (d1 > 0x7f || d2 > 0x7f) {
          unreadable(`${where(p)}: data byte ${hex(d1 > 0x7f ? d1 : d2)} of a channel event is above 0x7f`);
        }
        p += nData;
        const type = status >> 4;
        const channel = status & 0x0f;
        const key = format === 2 ? (no - 1) * 16 + channel : channel;
        if (type === 0x9 && d2 > 0) {
          const qk = channel * 128 + d1;
          let q = queues.get(qk);
          if (!q) queues.set(qk, (q = { ticks: [], velocities: [], head: 0 }));
          q.ticks.push(tick);
          q.velocities.push(d2);
          let ons = result.noteOnTicks.get(key);
          if (!ons) result.noteOnTicks.set(key, (ons = []));
          ons.push(tick);
          if (channel === DRUM_CHANNEL) result.drumNoteOns++;
        } else if (type === 0x8 || type === 0x9) {
          const q = queues.get(channel * 128 + d1);
          if (q && q.head < q.ticks.length) {
            const startTick = q.ticks[q.head]!;
            const velocity = q.velocities[q.head]!;
            q.head++;
            if (q.head === q.ticks.length) {
              q.ticks.length = 0;
              q.velocities.length = 0;
              q.head = 0;
            }
            result.notes.push({ pitch: d1, velocity, startTick, endTick: tick });
          }
          // else: a note-off with no sounding note; ignored.
        } else if (type === 0xc) {
          let list = result.programs.get(key);
          if (!list) result.programs.set(key, (list = []));
          list.push({ tick, program: d1, seq: seq++ });
        }
      } else if (status === 0xff) {
        if (p >= end) unreadable(`${where(at)}: meta event is cut off before its type`);
        const metaType = bytes[p++]!;
        const length = readVarLen(`length of meta event ${hex(metaType)}`, at);
        if (length > end - p) {
          unreadable(`${where(at)}: meta event ${hex(metaType)} declares ${length} bytes but only ${end - p} remain in the track chunk`);
        }
        if (metaType === 0x51) {
          if (length !== 3) unreadable(`${where(at)}: tempo event has ${length} data bytes, expected 3`);
          const uspb = (bytes[p]! << 16) | (bytes[p + 1]! << 8) | bytes[p + 2]!;
          if (uspb === 0) unreadable(`${where(at)}: tempo of 0 microseconds per beat`);
          result.tempos.push({ tick, uspb, seq: seq++ });
        }
        p += length;
        if (metaType === 0x2f) break; // End of Track: anything after it in the chunk is ignored
      } else if (status === 0xf0 || status === 0xf7) {
        const length = readVarLen('sysex length', at);
        if (length > end - p) {
          unreadable(`${where(at)}: sysex event declares ${length} bytes but only ${end - p} remain in the track chunk`);
        }
        p += length;
      } else {
        unreadable(`${where(at)}: ${hex(status)} is not a valid status byte in a MIDI file`);
      }
    }

    for (const q of queues.values()) result.droppedNoteOns += q.ticks.length - q.head;
  }
  return result;
}

/** Header and chunk structure; returns the spans of the MTrk chunks that will be read. */
function walkChunks(bytes: Uint8Array): { format: number; division: number; tracks: TrackSpan[] } {
  const len = bytes.length;
  if (len === 0) unreadable('empty file');
  if (len < 4 || bytes[0] !== 0x4d || bytes[1] !== 0x54 || bytes[2] !== 0x68 || bytes[3] !== 0x64) {
    unreadable(describeNotMidi(bytes));
  }
  if (len < 14) unreadable(`header chunk is cut off: the file has ${len} bytes, a MIDI header needs 14`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getUint32(4);
  if (headerLength !== 6) unreadable(`header chunk declares ${headerLength} bytes, expected 6`);
  const format = view.getUint16(8);
  if (format > 2) unreadable(`unknown MIDI file format ${format} (expected 0, 1 or 2)`);
  const ntrks = view.getUint16(10);
  if (ntrks === 0) unreadable('header declares 0 tracks');
  const division = view.getUint16(12);
  if (division === 0) unreadable('header declares a time division of 0 ticks per quarter note');

  const tracks: TrackSpan[] = [];
  let mtrk = 0;
  let pos = 14;
  // Every pass advances at least 8 bytes.
  for (let chunk = 1; pos < len; chunk++) {
    if (mtrk >= ntrks && bytes.subarray(pos).every((b) => b === 0)) break; // zero padding
    const remaining = len - pos;
    if (remaining < 8) {
      unreadable(`chunk ${chunk} at byte ${pos} is cut off: ${remaining} bytes remain, a chunk header needs 8`);
    }
    const idBytes = bytes.subarray(pos, pos + 4);
    if (!idBytes.every((b) => b >= 0x20 && b < 0x7f)) {
      const shown = Array.from(idBytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
      unreadable(`chunk ${chunk} at byte ${pos} has no valid type (bytes ${shown}): corrupt or misaligned`);
    }
    const id = String.fromCharCode(...idBytes);
    const length = view.getUint32(pos + 4);
    const isTrack = id === 'MTrk';
    const label = isTrack ? `track chunk ${mtrk + 1}` : `chunk ${chunk} (${JSON.stringify(id)})`;
    if (length > remaining - 8) {
      unreadable(`${label} declares ${length} bytes but only ${remaining - 8} remain`);
    }
    if (isTrack) {
      mtrk++;
      if (tracks.length < ntrks) tracks.push({ no: mtrk, start: pos + 8, end: pos + 8 + length });
    }
    pos += 8 + length;
  }
  if (mtrk < ntrks) {
    unreadable(`header declares ${ntrks} tracks but the file holds only ${mtrk} (truncated?)`);
  }
  return { format, division, tracks };
}

// ---------------------------------------------------------------------------------------------
// Acceptability

let programNames: string[] | undefined;

/** General MIDI instrument name of a program 0..127, from @tonejs/midi's table. */
export function instrumentName(program: number): string {
  if (!programNames) {
    programNames = [];
    try {
      const track = new tonejs.Midi().addTrack();
      for (let p = 0; p < 128; p++) {
        track.instrument.number = p;
        programNames.push(track.instrument.name || `program ${p}`);
      }
    } catch {
      programNames = [];
    }
  }
  return programNames[program] ?? `program ${program}`;
}

/** First non-piano program that is in effect while its channel plays a note, if any. */
function findNonPianoProgram(scan: ScanResult): { key: number; program: number } | undefined {
  for (const [key, changes] of scan.programs) {
    const ons = scan.noteOnTicks.get(key);
    if (!ons || !changes.some((c) => c.program >= PIANO_PROGRAMS_END)) continue;
    const sortedChanges = [...changes].sort((a, b) => a.tick - b.tick || a.seq - b.seq);
    const sortedOns = Float64Array.from(ons).sort();
    // A change at tick t applies to notes from t (inclusive) until the next change.
    let i = 0;
    let program = 0;
    for (const onTick of sortedOns) {
      while (i < sortedChanges.length && sortedChanges[i]!.tick <= onTick) program = sortedChanges[i++]!.program;
      if (program >= PIANO_PROGRAMS_END) return { key, program };
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Tempo map

class TempoMap {
  private readonly ticks: number[] = [];
  private readonly seconds: number[] = [];
  /** Seconds per tick of each segment. */
  private readonly spt: number[] = [];
  private readonly uspb: number[] = [];
  readonly hasTempo: boolean;

  constructor(
    changes: readonly TempoChange[],
    private readonly ppq: number,
  ) {
    this.hasTempo = changes.length > 0;
    const sorted = [...changes].sort((a, b) => a.tick - b.tick || a.seq - b.seq);
    this.push(0, DEFAULT_USPB);
    for (const c of sorted) this.push(c.tick, c.uspb);
  }

  private push(tick: number, uspb: number): void {
    const n = this.ticks.length;
    if (n > 0 && this.ticks[n - 1] === tick) {
      // Same tick: the later change wins.
      this.uspb[n - 1] = uspb;
      this.spt[n - 1] = uspb / 1e6 / this.ppq;
      return;
    }
    const seconds = n === 0 ? 0 : this.seconds[n - 1]! + (tick - this.ticks[n - 1]!) * this.spt[n - 1]!;
    this.ticks.push(tick);
    this.seconds.push(seconds);
    this.uspb.push(uspb);
    this.spt.push(uspb / 1e6 / this.ppq);
  }

  private segmentAt(tick: number): number {
    let lo = 0;
    let hi = this.ticks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.ticks[mid]! <= tick) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  toSeconds(tick: number): number {
    const i = this.segmentAt(tick);
    return this.seconds[i]! + (tick - this.ticks[i]!) * this.spt[i]!;
  }

  /** Median tempo in bpm over [0, endTick], each tempo weighted by the seconds it lasts. */
  medianBpm(endTick: number): number {
    if (!this.hasTempo) return 60e6 / DEFAULT_USPB;
    const segments: { bpm: number; weight: number }[] = [];
    let total = 0;
    for (let i = 0; i < this.ticks.length && this.ticks[i]! < endTick; i++) {
      const segEnd = Math.min(this.ticks[i + 1] ?? Infinity, endTick);
      const weight = (segEnd - this.ticks[i]!) * this.spt[i]!;
      if (weight > 0) {
        segments.push({ bpm: 60e6 / this.uspb[i]!, weight });
        total += weight;
      }
    }
    if (segments.length === 0 || !(total > 0)) return 60e6 / this.uspb[this.segmentAt(0)]!;
    segments.sort((a, b) => a.bpm - b.bpm);
    let acc = 0;
    for (const s of segments) {
      acc += s.weight;
      if (acc >= total / 2) return s.bpm;
    }
    return segments[segments.length - 1]!.bpm;
  }
}

// ---------------------------------------------------------------------------------------------
// Entry points

function buildPiece(bytes: Uint8Array, name: string, limits: MidiLimits): PianoPiece {
  if (bytes.length > limits.maxBytes) {
    unacceptable(`file is ${bytes.length} bytes, over the limit of ${limits.maxBytes}`);
  }
  const { format, division, tracks } = walkChunks(bytes);
  const scan = scanTracks(bytes, tracks, format);

  if (division & 0x8000) {
    const fps = 0x100 - (division >> 8);
    unacceptable(`SMPTE time division (${fps} frames per second, ${division & 0xff} ticks per frame) is not supported`);
  }
  if (scan.drumNoteOns > 0) unacceptable('drums on channel 10');
  const nonPiano = findNonPianoProgram(scan);
  if (nonPiano) {
    const channel = (nonPiano.key % 16) + 1;
    const track = format === 2 ? ` of track ${Math.floor(nonPiano.key / 16) + 1}` : '';
    unacceptable(
      `non-piano instrument on channel ${channel}${track}: ${instrumentName(nonPiano.program)} (program ${nonPiano.program})`,
    );
  }
  if (scan.notes.length === 0) {
    unacceptable(scan.droppedNoteOns > 0 ? `no notes (${scan.droppedNoteOns} note-ons are never released)` : 'no notes');
  }
  if (scan.notes.length > limits.maxNotes) {
    unacceptable(`too many notes: ${scan.notes.length} (limit ${limits.maxNotes})`);
  }

  const ppq = division;
  const tempo = new TempoMap(scan.tempos, ppq);
  const minTicks = MIN_NOTE_BEATS * ppq;
  scan.notes.sort((a, b) => a.startTick - b.startTick || a.pitch - b.pitch || a.endTick - b.endTick);
  const notes: PianoNote[] = new Array(scan.notes.length);
  let endSeconds = 0;
  let endTick = 0;
  for (let i = 0; i < scan.notes.length; i++) {
    const raw = scan.notes[i]!;
    const endTickOfNote = raw.endTick > raw.startTick ? raw.endTick : raw.startTick + minTicks;
    const startSeconds = tempo.toSeconds(raw.startTick);
    const noteEndSeconds = tempo.toSeconds(endTickOfNote);
    notes[i] = {
      pitch: raw.pitch,
      velocity: raw.velocity,
      startBeat: raw.startTick / ppq,
      durationBeats: (endTickOfNote - raw.startTick) / ppq,
      startSeconds,
      durationSeconds: noteEndSeconds - startSeconds,
    };
    if (noteEndSeconds > endSeconds || Number.isNaN(noteEndSeconds)) endSeconds = noteEndSeconds;
    if (endTickOfNote > endTick) endTick = endTickOfNote;
  }
  if (!Number.isFinite(endSeconds) || endSeconds > limits.maxSeconds) {
    unacceptable(`absurd duration: ${formatDuration(endSeconds)} (limit ${formatDuration(limits.maxSeconds)})`);
  }
  return {
    name: basename(name),
    notes,
    durationSeconds: endSeconds,
    tempoBpm: tempo.medianBpm(endTick),
  };
}

/**
 * Validates and decodes a Standard MIDI File held in memory. `name` is used in messages (and its
 * last path component becomes `piece.name`). Throws MidiInputError, never anything else.
 */
export function parseMidi(bytes: Uint8Array, name: string, limits?: Partial<MidiLimits>): PianoPiece {
  try {
    return buildPiece(bytes, name, resolveLimits(limits));
  } catch (e) {
    if (e instanceof Refusal) throw new MidiInputError(name, e.reason, e.kind);
    if (e instanceof MidiInputError) throw e;
    // A bug or an engine limit (out of memory): still a MidiInputError, never a bare throw.
    const message = e instanceof Error ? e.message : String(e);
    throw new MidiInputError(name, `could not be decoded: ${message}`, 'unreadable');
  }
}

function describeFsError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory, not a file';
    case 'ENOTDIR':
      return 'no such file (a parent is not a directory)';
    case 'ELOOP':
      return 'too many levels of symbolic links';
    default:
      return `cannot be read (${code ?? (e instanceof Error ? e.message : String(e))})`;
  }
}

/** Stats, size-checks, reads and parses a MIDI file. Throws MidiInputError, never anything else. */
export async function readMidiFile(path: string, limits?: Partial<MidiLimits>): Promise<PianoPiece> {
  const lim = resolveLimits(limits);
  let bytes: Uint8Array;
  try {
    const st = await stat(path);
    if (st.isDirectory()) throw new MidiInputError(path, 'is a directory, not a file', 'unreadable');
    if (!st.isFile()) throw new MidiInputError(path, 'is not a regular file', 'unreadable');
    if (st.size > lim.maxBytes) {
      throw new MidiInputError(path, `file is ${st.size} bytes, over the limit of ${lim.maxBytes}`, 'unacceptable');
    }
    bytes = await readFile(path);
  } catch (e) {
    if (e instanceof MidiInputError) throw e;
    throw new MidiInputError(path, describeFsError(e), 'unreadable');
  }
  return parseMidi(bytes, path, lim);
}
