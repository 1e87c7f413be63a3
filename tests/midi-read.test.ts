import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import tonejs from '@tonejs/midi';
import { MIDI_LIMITS, MIN_NOTE_BEATS, MidiInputError, parseMidi, readMidiFile, type MidiLimits } from '../src/midi/read.ts';
import { seededRandom } from '../src/model/random.ts';
import { checkMidiBytes, checkMidiFile, runCheck, type MidiVerdict } from '../src/midi/check.ts';
import type { PianoPiece } from '../src/midi/types.ts';

const { Midi } = tonejs;

const DATASET = '/work/shared/datasets/piano-midi-de/midis';
const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const CHOPIN = join(FIXTURES, 'chpn-p20.mid');
const SCHUMANN = join(FIXTURES, 'scn15_4.mid');
const chopinBytes = readFileSync(CHOPIN);
const schumannBytes = readFileSync(SCHUMANN);

// ---------------------------------------------------------------------------------------------
// Helpers

/** Expect parseMidi to refuse `bytes` with this kind and a reason containing `reasonPart`. */
function expectRefusal(
  bytes: Uint8Array,
  kind: 'unreadable' | 'unacceptable',
  reasonPart: string | RegExp,
  limits?: Partial<MidiLimits>,
): MidiInputError {
  let caught: unknown;
  try {
    parseMidi(bytes, 'case.mid', limits);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof MidiInputError, `expected a MidiInputError, got ${String(caught)}`);
  assert.equal(caught.kind, kind, `kind for reason "${caught.reason}"`);
  if (typeof reasonPart === 'string') assert.ok(caught.reason.includes(reasonPart), `reason "${caught.reason}" lacks "${reasonPart}"`);
  else assert.match(caught.reason, reasonPart);
  assert.equal(caught.file, 'case.mid');
  assert.equal(caught.message, `case.mid: ${caught.reason}`);
  // The verdict agrees with the exception.
  const v = checkMidiBytes(bytes, 'case.mid', limits);
  assert.equal(v.status, kind);
  assert.equal(v.reason, caught.reason);
  return caught;
}

function assertWellFormedPiece(piece: PianoPiece, label: string): void {
  assert.ok(piece.notes.length > 0, `${label}: no notes`);
  assert.ok(Number.isFinite(piece.durationSeconds) && piece.durationSeconds > 0, `${label}: duration ${piece.durationSeconds}`);
  assert.ok(Number.isFinite(piece.tempoBpm) && piece.tempoBpm > 0, `${label}: tempo ${piece.tempoBpm}`);
  let prev = piece.notes[0]!;
  let maxEnd = 0;
  for (const n of piece.notes) {
    assert.ok(Number.isInteger(n.velocity) && n.velocity >= 1 && n.velocity <= 127, `${label}: velocity ${n.velocity}`);
    assert.ok(Number.isInteger(n.pitch) && n.pitch >= 0 && n.pitch <= 127, `${label}: pitch ${n.pitch}`);
    assert.ok(n.durationBeats > 0 && n.durationSeconds > 0, `${label}: non-positive duration`);
    assert.ok(n.startBeat >= 0 && n.startSeconds >= 0);
    assert.ok(
      n.startBeat > prev.startBeat || (n.startBeat === prev.startBeat && n.pitch >= prev.pitch),
      `${label}: notes not sorted by startBeat then pitch`,
    );
    prev = n;
    maxEnd = Math.max(maxEnd, n.startSeconds + n.durationSeconds);
  }
  assert.ok(Math.abs(maxEnd - piece.durationSeconds) < 1e-9, `${label}: durationSeconds is not the end of the last note`);
}

/** A variable-length quantity. */
function vlq(n: number): number[] {
  const out = [n & 0x7f];
  n = Math.floor(n / 128);
  while (n > 0) {
    out.unshift((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  return out;
}

function chunk(id: string, body: ArrayLike<number>, declaredLength = body.length): number[] {
  const len = declaredLength;
  return [...Array.from(id, (c) => c.charCodeAt(0)), (len >>> 24) & 255, (len >>> 16) & 255, (len >>> 8) & 255, len & 255, ...Array.from(body)];
}

/** A hand-built Standard MIDI File: tracks are raw event bytes (End of Track appended). */
function smf(tracks: number[][], opts: { format?: number; division?: number; ntrks?: number; eot?: boolean } = {}): Uint8Array {
  const { format = 1, division = 480, ntrks = tracks.length, eot = true } = opts;
  const header = chunk('MThd', [0, format, ntrks >> 8, ntrks & 255, division >> 8, division & 255]);
  const body = tracks.flatMap((t) => chunk('MTrk', eot ? [...t, 0, 0xff, 0x2f, 0] : t));
  return Uint8Array.from([...header, ...body]);
}

/** A note-on and its note-off `len` ticks later, on channel `ch`. */
const note = (pitch: number, len: number, ch = 0, vel = 80): number[] => [0, 0x90 | ch, pitch, vel, ...vlq(len), 0x80 | ch, pitch, 0];

/** A small piano piece built with @tonejs/midi; `edit` adds to or changes it. */
function tonejsFile(edit: (midi: InstanceType<typeof Midi>) => void): Uint8Array {
  const midi = new Midi();
  edit(midi);
  return midi.toArray();
}

function pianoTrack(midi: InstanceType<typeof Midi>, notes = 8, channel = 0): void {
  const track = midi.addTrack();
  track.channel = channel;
  for (let i = 0; i < notes; i++) track.addNote({ midi: 60 + (i % 12), ticks: i * 240, durationTicks: 240, velocity: 0.7 });
}

function listDataset(): string[] {
  const files: string[] = [];
  for (const composer of readdirSync(DATASET).sort()) {
    for (const f of readdirSync(join(DATASET, composer)).sort()) if (f.endsWith('.mid')) files.push(join(DATASET, composer, f));
  }
  return files;
}

// ---------------------------------------------------------------------------------------------
// Real files

test('the two fixtures parse into sorted solo-piano pieces', () => {
  const chopin = parseMidi(chopinBytes, CHOPIN);
  assert.equal(chopin.name, 'chpn-p20.mid');
  assert.equal(chopin.notes.length, 286);
  assert.ok(Math.abs(chopin.durationSeconds - 82.9) < 0.05, `duration ${chopin.durationSeconds}`);
  assertWellFormedPiece(chopin, 'chpn-p20');
  // The prelude opens with a C minor chord (C2 in the bass), on the first beat.
  assert.equal(chopin.notes[0]!.pitch, 36);
  assert.equal(chopin.notes[0]!.startBeat, 0);

  const schumann = parseMidi(schumannBytes, 'scn15_4.mid');
  assert.equal(schumann.notes.length, 220);
  assertWellFormedPiece(schumann, 'scn15_4');
  // startBeat is ticks / ppq (480 in these files): the first note is one tick late.
  assert.equal(schumann.notes[0]!.startBeat, 1 / 480);
});

test('notes match @tonejs/midi on the fixtures and a sample of the dataset', () => {
  const files = [CHOPIN, SCHUMANN, ...(existsSync(DATASET) ? listDataset().filter((f, i) => i % 16 === 0 || f.endsWith('muss_6.mid')) : [])];
  for (const file of files) {
    const bytes = readFileSync(file);
    const ours = parseMidi(bytes, file);
    const midi = new Midi(bytes);
    const ppq = midi.header.ppq;
    const theirs = midi.tracks
      .flatMap((t) => t.notes)
      .sort((a, b) => a.ticks - b.ticks || a.midi - b.midi || a.durationTicks - b.durationTicks);
    assert.equal(ours.notes.length, theirs.length, `${file}: note count`);
    for (let i = 0; i < theirs.length; i++) {
      const a = ours.notes[i]!;
      const b = theirs[i]!;
      assert.equal(a.pitch, b.midi, `${file} note ${i}`);
      assert.ok(Math.abs(a.startBeat * ppq - b.ticks) < 1e-6, `${file} note ${i} start`);
      assert.equal(a.velocity, Math.round(b.velocity * 127), `${file} note ${i} velocity`);
      assert.ok(Math.abs(a.startSeconds - b.time) < 1e-6, `${file} note ${i} seconds`);
      if (b.durationTicks === 0) {
        // tonejs keeps zero-length notes (one in the dataset, muss_6.mid); we lengthen them.
        assert.equal(a.durationBeats, MIN_NOTE_BEATS, `${file} note ${i} minimum length`);
        continue;
      }
      assert.ok(Math.abs(a.durationBeats * ppq - b.durationTicks) < 1e-6, `${file} note ${i} length`);
      assert.ok(Math.abs(a.durationSeconds - b.duration) < 1e-6, `${file} note ${i} duration seconds`);
    }
  }
});

test('all 315 dataset files are ok', { skip: !existsSync(DATASET) && 'dataset not present' }, async (t) => {
  const files = listDataset();
  assert.equal(files.length, 315);
  const started = performance.now();
  let notes = 0;
  for (const file of files) {
    const v = checkMidiBytes(readFileSync(file), file);
    assert.equal(v.status, 'ok', `${file}: ${v.reason}`);
    assert.ok(v.notes! > 0 && v.durationSeconds! > 0 && v.durationSeconds! <= MIDI_LIMITS.maxSeconds);
    notes += v.notes!;
  }
  const ms = performance.now() - started;
  // And through the file path, with the exit code of `check`.
  const lines: string[] = [];
  const code = await runCheck(files, (l) => lines.push(l));
  assert.equal(code, 0);
  assert.equal(lines.length, 315);
  assert.ok(lines.every((l) => l.startsWith('ok ')));
  t.diagnostic(`dataset: 315 files, ${notes} notes, parsed in ${ms.toFixed(0)} ms`);
});

test('every dataset piece has sorted notes, integer velocities and a sane tempo', { skip: !existsSync(DATASET) && 'dataset not present' }, () => {
  for (const file of listDataset()) {
    const piece = parseMidi(readFileSync(file), file);
    assertWellFormedPiece(piece, file);
    assert.ok(piece.tempoBpm > 20 && piece.tempoBpm < 300, `${file}: tempo ${piece.tempoBpm}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Synthetic files built with @tonejs/midi

test('a piano piece built with @tonejs/midi is ok, with tempo and seconds from the tempo map', () => {
  const bytes = tonejsFile((midi) => {
    midi.header.setTempo(90);
    pianoTrack(midi, 16);
  });
  const piece = parseMidi(bytes, 'built.mid');
  assert.equal(piece.notes.length, 16);
  assert.ok(Math.abs(piece.tempoBpm - 90) < 0.01, `tempo ${piece.tempoBpm}`);
  const last = piece.notes[15]!;
  assert.equal(last.startBeat, 7.5);
  assert.equal(last.durationBeats, 0.5);
  assert.ok(Math.abs(last.startSeconds - 7.5 * (60 / 90)) < 1e-4);
  assert.ok(Math.abs(piece.durationSeconds - 8 * (60 / 90)) < 1e-4);
  assert.equal(last.velocity, Math.floor(0.7 * 127));
});

test('no tempo event means 120 bpm', () => {
  const piece = parseMidi(smf([[...note(60, 960), ...note(62, 480)]]), 'plain.mid');
  assert.equal(piece.tempoBpm, 120);
  assert.equal(piece.notes[1]!.startSeconds, 1);
  assert.equal(piece.durationSeconds, 1.5);
});

test('drums on channel 10 are unacceptable', () => {
  const bytes = tonejsFile((midi) => {
    pianoTrack(midi);
    pianoTrack(midi, 4, 9);
  });
  expectRefusal(bytes, 'unacceptable', 'drums on channel 10');
});

test('an organ or a violin is unacceptable, named', () => {
  const organ = tonejsFile((midi) => {
    pianoTrack(midi);
    midi.tracks[0]!.instrument.number = 19;
  });
  expectRefusal(organ, 'unacceptable', /non-piano instrument on channel 1: church organ \(program 19\)/);
  const violin = tonejsFile((midi) => {
    pianoTrack(midi);
    pianoTrack(midi, 4, 1);
    midi.tracks[1]!.instrument.number = 40;
  });
  expectRefusal(violin, 'unacceptable', 'violin (program 40)');
});

test('piano-family programs are fine, and so is another program on a channel with no notes', () => {
  const bright = tonejsFile((midi) => {
    pianoTrack(midi);
    midi.tracks[0]!.instrument.number = 1; // bright acoustic piano, as in 10 dataset tracks
  });
  assert.equal(checkMidiBytes(bright, 'bright.mid').status, 'ok');
  const silentViolin = tonejsFile((midi) => {
    pianoTrack(midi);
    const t = midi.addTrack();
    t.channel = 3;
    t.instrument.number = 40; // program change written, but channel 4 never plays
  });
  assert.equal(checkMidiBytes(silentViolin, 'silent.mid').status, 'ok');
});

test('a program change takes effect from its tick, across tracks of a format 1 file', () => {
  // Piano notes first; the channel switches to a trumpet (56) at beat 4 in another track.
  const laterTrumpet = smf([[0, 0xff, 0x51, 3, 0x07, 0xa1, 0x20], [...vlq(1920), 0xc0, 56], [...note(60, 480), ...note(62, 480)]]);
  assert.equal(checkMidiBytes(laterTrumpet, 'a.mid').status, 'ok');
  const trumpetThenNotes = smf([[...vlq(100), 0xc0, 56], [...note(60, 480), ...note(62, 480)]]);
  expectRefusal(trumpetThenNotes, 'unacceptable', 'trumpet (program 56)');
});

test('a file with no notes is unacceptable', () => {
  expectRefusal(tonejsFile(() => {}), 'unacceptable', 'no notes');
  expectRefusal(
    tonejsFile((midi) => void midi.addTrack()),
    'unacceptable',
    'no notes',
  );
  // Note-ons that are never released are dropped, so this has no notes either.
  expectRefusal(smf([[0, 0x90, 60, 80, 0, 64, 80]]), 'unacceptable', 'never released');
});

test('too many notes, by a small limit', () => {
  const bytes = tonejsFile((midi) => pianoTrack(midi, 50));
  expectRefusal(bytes, 'unacceptable', 'too many notes: 50 (limit 10)', { maxNotes: 10 });
  assert.equal(checkMidiBytes(bytes, 'fifty.mid', { maxNotes: 50 }).status, 'ok');
});

test('an absurd duration is unacceptable', () => {
  // One note 40 minutes in, at 120 bpm.
  const late = tonejsFile((midi) => {
    const t = midi.addTrack();
    t.addNote({ midi: 60, ticks: 480 * 2 * 60 * 40, durationTicks: 480, velocity: 0.5 });
  });
  expectRefusal(late, 'unacceptable', 'absurd duration: 40:01 (limit 30:00)');
  // The longest possible beat (0xffffff µs = 16.8 s) with a long delta.
  expectRefusal(smf([[0, 0xff, 0x51, 3, 0xff, 0xff, 0xff, ...vlq(0x0fffffff), 0x90, 60, 80, 10, 0x80, 60, 0]]), 'unacceptable', 'absurd duration');
  // And by a small limit.
  expectRefusal(chopinBytes, 'unacceptable', 'absurd duration: 1:23 (limit 1:00)', { maxSeconds: 60 });
});

test('a note released at the tick it starts is kept with the minimum length', () => {
  const piece = parseMidi(smf([[0, 0x90, 60, 80, 0, 0x80, 60, 0, ...note(64, 480)]]), 'zero.mid');
  assert.equal(piece.notes.length, 2);
  assert.equal(piece.notes[0]!.pitch, 60);
  assert.equal(piece.notes[0]!.durationBeats, MIN_NOTE_BEATS);
  assert.ok(piece.notes[0]!.durationSeconds > 0);
});

test('a stray note-off does not steal the next note of the same key', () => {
  // off(60) with nothing sounding, then on(60) at the same tick, released a beat later.
  const piece = parseMidi(smf([[0, 0x80, 60, 0, 0, 0x90, 60, 80, ...vlq(480), 0x90, 60, 0]]), 'stray.mid');
  assert.equal(piece.notes.length, 1);
  assert.equal(piece.notes[0]!.durationBeats, 1);
});

test('SMPTE time division is refused with a clear reason', () => {
  expectRefusal(smf([note(60, 40)], { division: 0xe728 }), 'unacceptable', 'SMPTE time division (25 frames per second, 40 ticks per frame)');
});

// ---------------------------------------------------------------------------------------------
// Broken files

test('truncated real files are unreadable at every kind of cut point', () => {
  const cuts: [number, string | RegExp][] = [
    [0, 'empty file'],
    [2, 'not a MIDI file'],
    [10, 'header chunk is cut off'],
    [14, 'header declares 8 tracks but the file holds only 0'],
    [18, 'chunk 1 at byte 14 is cut off: 4 bytes remain'],
    [30, /^track chunk 1 declares \d+ bytes but only 8 remain$/],
    [Math.floor(chopinBytes.length / 2), /^track chunk \d declares \d+ bytes but only \d+ remain$/],
    [chopinBytes.length - 1, /^track chunk 8 declares \d+ bytes but only \d+ remain$/],
  ];
  for (const [cut, reason] of cuts) expectRefusal(chopinBytes.subarray(0, cut), 'unreadable', reason);
  // A cut exactly at a chunk boundary loses whole tracks.
  const firstTrackEnd = 14 + 8 + new DataView(chopinBytes.buffer, chopinBytes.byteOffset).getUint32(18);
  expectRefusal(chopinBytes.subarray(0, firstTrackEnd), 'unreadable', 'header declares 8 tracks but the file holds only 1');
});

test('a corrupted chunk length is unreadable, naming the chunk and the byte counts', () => {
  const bytes = Uint8Array.from(schumannBytes);
  const view = new DataView(bytes.buffer);
  const secondTrack = 14 + 8 + view.getUint32(18);
  view.setUint32(secondTrack + 4, 5000);
  const remaining = bytes.length - secondTrack - 8;
  expectRefusal(bytes, 'unreadable', `track chunk 2 declares 5000 bytes but only ${remaining} remain`);
  view.setUint32(secondTrack + 4, 0xffffffff); // would be -1 as a signed length
  expectRefusal(bytes, 'unreadable', `track chunk 2 declares 4294967295 bytes but only ${remaining} remain`);
  // Too short: the track's events now run into the next chunk header, then garbage.
  view.setUint32(secondTrack + 4, 3);
  expectRefusal(bytes, 'unreadable', /track|chunk/);
});

test('malformed events inside a track are unreadable with a reason', () => {
  expectRefusal(smf([[0, 60, 80]]), 'unreadable', 'track 1, byte 23: data byte 0x3c with no status byte before it');
  expectRefusal(smf([[0, 0xf4, 1, 2]]), 'unreadable', '0xf4 is not a valid status byte');
  expectRefusal(smf([[0xff, 0xff, 0xff, 0xff, 0x7f, 0x90, 60, 80]]), 'unreadable', 'delta time is longer than 4 bytes');
  expectRefusal(smf([[0, 0xff, 0x01, 50, 65, 66]], { eot: false }), 'unreadable', 'meta event 0x01 declares 50 bytes but only 2 remain');
  expectRefusal(smf([[0, 0xf0, 20, 1, 2]], { eot: false }), 'unreadable', 'sysex event declares 20 bytes but only 2 remain');
  expectRefusal(smf([[0, 0x90, 60]], { eot: false }), 'unreadable', 'channel event runs past the end of the track chunk');
  expectRefusal(smf([[0, 0x90, 0xc8, 80]]), 'unreadable', 'data byte 0xc8 of a channel event is above 0x7f');
  expectRefusal(smf([[0, 0xff, 0x51, 2, 1, 2]]), 'unreadable', 'tempo event has 2 data bytes, expected 3');
  expectRefusal(smf([[0, 0xff, 0x51, 3, 0, 0, 0]]), 'unreadable', 'tempo of 0 microseconds per beat');
  expectRefusal(smf([[0x81]], { eot: false }), 'unreadable', 'delta time runs past the end');
});

test('a malformed header is unreadable', () => {
  expectRefusal(Uint8Array.from([...chunk('MThd', [0, 1, 0, 1, 1, 0xe0, 0]), ...chunk('MTrk', note(60, 10))]), 'unreadable', 'header chunk declares 7 bytes, expected 6');
  expectRefusal(smf([note(60, 10)], { format: 3 }), 'unreadable', 'unknown MIDI file format 3');
  expectRefusal(smf([note(60, 10)], { division: 0 }), 'unreadable', 'time division of 0');
  expectRefusal(smf([], { ntrks: 0 }), 'unreadable', 'header declares 0 tracks');
});

test('unknown chunks are skipped, other chunk junk is not', () => {
  const track = chunk('MTrk', [...note(60, 480), 0, 0xff, 0x2f, 0]);
  const header = chunk('MThd', [0, 1, 0, 1, 1, 0xe0]);
  const withXfih = Uint8Array.from([...header, ...chunk('XFIH', [1, 2, 3]), ...track]);
  assert.equal(checkMidiBytes(withXfih, 'x.mid').status, 'ok');
  const padded = Uint8Array.from([...header, ...track, 0, 0, 0]);
  assert.equal(checkMidiBytes(padded, 'pad.mid').status, 'ok');
  const trailing = Uint8Array.from([...header, ...track, 0x41, 0x42]);
  expectRefusal(trailing, 'unreadable', 'chunk 2 at byte');
  const binaryId = Uint8Array.from([...header, ...track, 0x00, 0x01, 0x02, 0x03, 0, 0, 0, 0]);
  expectRefusal(binaryId, 'unreadable', 'has no valid type');
  const badUnknown = Uint8Array.from([...header, ...chunk('XFIH', [1, 2, 3], 99), ...track]);
  expectRefusal(badUnknown, 'unreadable', 'chunk 1 ("XFIH") declares 99 bytes');
});

test('a non-MIDI file is unreadable', () => {
  const text = new TextEncoder().encode('Hello, this is a text file.\nIt is not MIDI.\n');
  expectRefusal(text, 'unreadable', 'not a MIDI file (looks like text: "Hello, this is a text');
  expectRefusal(Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48]), 'unreadable', 'starts with bytes 89 50 4e 47');
  expectRefusal(new TextEncoder().encode('RIFF\x10\x00\x00\x00RMIDdata'), 'unreadable', 'RIFF');
});

test('an oversized file is unacceptable (bytes and path)', async () => {
  expectRefusal(chopinBytes, 'unacceptable', `file is ${chopinBytes.length} bytes, over the limit of 1000`, { maxBytes: 1000 });
  await assert.rejects(readMidiFile(CHOPIN, { maxBytes: 1000 }), (e: unknown) => {
    assert.ok(e instanceof MidiInputError);
    assert.equal(e.kind, 'unacceptable');
    assert.match(e.reason, /over the limit of 1000/);
    return true;
  });
});

test('readMidiFile: missing file and directory are unreadable; a real file reads', async () => {
  const missing = await checkMidiFile(join(FIXTURES, 'no-such-file.mid'));
  assert.deepEqual(missing, { file: join(FIXTURES, 'no-such-file.mid'), status: 'unreadable', reason: 'no such file' });
  const dir = await checkMidiFile(FIXTURES);
  assert.equal(dir.status, 'unreadable');
  assert.match(dir.reason!, /directory/);
  const piece = await readMidiFile(CHOPIN);
  assert.equal(piece.name, 'chpn-p20.mid');
  assert.equal(piece.notes.length, 286);
});

// ---------------------------------------------------------------------------------------------
// runCheck

test('runCheck prints one line per file and returns 0 / 1 / 2', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nocturne-check-'));
  try {
    const drums = join(dir, 'drums.mid');
    writeFileSync(drums, tonejsFile((midi) => pianoTrack(midi, 4, 9)));
    const cut = join(dir, 'cut.mid');
    writeFileSync(cut, chopinBytes.subarray(0, 1000));
    const text = join(dir, 'notes.txt');
    writeFileSync(text, 'not a midi file\n');

    const run = async (files: string[]): Promise<{ code: number; lines: string[] }> => {
      const lines: string[] = [];
      const code = await runCheck(files, (l) => lines.push(l));
      for (const l of lines) {
        assert.ok(!l.includes('    at '), `stack trace in output: ${l}`);
        assert.ok(!l.includes('\n'), 'one line per print');
      }
      return { code, lines };
    };

    const ok = await run([CHOPIN, SCHUMANN]);
    assert.equal(ok.code, 0);
    assert.equal(ok.lines.length, 2);
    assert.equal(ok.lines[0], `ok           ${CHOPIN}  solo piano, 286 notes, 1:23`);

    const bad = await run([CHOPIN, drums]);
    assert.equal(bad.code, 1);
    assert.equal(bad.lines[1], `unacceptable ${drums}  drums on channel 10`);

    const broken = await run([drums, cut, CHOPIN, text, join(dir, 'missing.mid'), dir]);
    assert.equal(broken.code, 2);
    assert.equal(broken.lines.length, 6);
    assert.match(broken.lines[1]!, /^unreadable {3}\S+cut\.mid {2}track chunk \d declares \d+ bytes but only \d+ remain$/);
    assert.match(broken.lines[3]!, /^unreadable .*not a MIDI file/);
    assert.match(broken.lines[4]!, /^unreadable .*missing\.mid {2}no such file$/);
    assert.match(broken.lines[5]!, /^unreadable .*directory/);

    const none = await run([]);
    assert.equal(none.code, 2);
    assert.match(none.lines[0]!, /^usage: /);

    // A print function that throws does not make runCheck throw.
    assert.equal(await runCheck([CHOPIN], () => { throw new Error('EPIPE'); }), 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// Mutation fuzz

test('seeded mutation fuzz: every mutated or truncated copy gets a verdict, nothing else is thrown', (t) => {
  const generator = seededRandom(20240611);
  const random = () => generator.next();
  const int = (n: number): number => Math.floor(random() * n);
  const seeds = [chopinBytes, schumannBytes];
  const counts: Record<MidiVerdict['status'], number> = { ok: 0, unacceptable: 0, unreadable: 0 };
  const N = 2000;
  let total = 0;
  let slowest = 0;
  for (let i = 0; i < N; i++) {
    const src = seeds[i % 2]!;
    let b = Array.from(src);
    const mutations = 1 + int(3);
    for (let m = 0; m < mutations; m++) {
      // Every fourth case only changes data bytes in range, so more copies stay readable and
      // reach the acceptability checks and the tempo map.
      switch (i % 4 === 0 ? 8 : int(9)) {
        case 0: // truncate
          b = b.slice(0, int(b.length + 1));
          break;
        case 1: // overwrite a few random bytes
          for (let k = 0, n = 1 + int(8); k < n && b.length; k++) b[int(b.length)] = int(256);
          break;
        case 2: { // corrupt a chunk length field (or the header)
          const pos = [4, 10, 12, 18, 19, 20, 21][int(7)]!;
          if (pos < b.length) b[pos] = int(256);
          break;
        }
        case 3: { // insert random bytes
          const at = int(b.length + 1);
          b.splice(at, 0, ...Array.from({ length: 1 + int(16) }, () => int(256)));
          break;
        }
        case 4: { // delete a range
          const at = int(b.length + 1);
          b.splice(at, 1 + int(64));
          break;
        }
        case 5: { // duplicate a range
          const at = int(b.length + 1);
          b.splice(at, 0, ...b.slice(at, at + 1 + int(200)));
          break;
        }
        case 6: // a run of continuation bytes (variable-length quantities that never end)
          for (let k = 0, at = int(b.length), n = 1 + int(12); k < n && at + k < b.length; k++) b[at + k] = 0x80 | int(128);
          break;
        case 7: // set high bits on data bytes / status bytes
          for (let k = 0, n = 1 + int(4); k < n && b.length; k++) b[int(b.length)]! ^= 0x80;
          break;
        default: // in-range data bytes: keeps the structure, changes pitches, programs, tempi, deltas
          for (let k = 0, n = 1 + int(8); k < n && b.length; k++) b[int(b.length)] = int(128);
      }
    }
    const bytes = Uint8Array.from(b);
    const started = performance.now();
    const verdict = checkMidiBytes(bytes, `fuzz-${i}.mid`);
    let thrown: unknown = null;
    try {
      parseMidi(bytes, `fuzz-${i}.mid`);
    } catch (e) {
      thrown = e;
    }
    const ms = (performance.now() - started) / 2;
    total += ms;
    slowest = Math.max(slowest, ms);
    assert.ok(['ok', 'unacceptable', 'unreadable'].includes(verdict.status));
    counts[verdict.status]++;
    if (verdict.status === 'ok') {
      assert.equal(thrown, null);
      assert.ok(verdict.notes! > 0);
    } else {
      assert.ok(thrown instanceof MidiInputError, `case ${i}: threw ${String(thrown)}`);
      assert.equal(thrown.kind, verdict.status);
      assert.ok(verdict.reason && !verdict.reason.includes('    at ') && !verdict.reason.startsWith('could not be decoded'), `case ${i}: ${verdict.reason}`);
    }
  }
  const summary = `fuzz: ${N} cases (${counts.ok} ok, ${counts.unacceptable} unacceptable, ${counts.unreadable} unreadable) in ${total.toFixed(0)} ms, slowest ${slowest.toFixed(2)} ms`;
  t.diagnostic(summary);
  assert.ok(counts.unreadable > 0 && counts.ok > 0);
});
