/**
 * A bot for the chat tests: a tiny model in a temporary folder, its own data and out folders,
 * and helpers to check what arrives (valid WAV/OGG, a MIDI with N notes, a PNG).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tonejs from '@tonejs/midi';
import { Bot } from '../../src/chat/bot.ts';
import type { QueueLimits } from '../../src/jobs/queue.ts';
import { parseMidi } from '../../src/midi/read.ts';
import { createTinyModel } from './tinyModel.ts';

export const FAST_TEMPO_BPM = 480;

export interface ChatFixture {
  dir: string;
  modelDir: string;
  dataDir: string;
  outDir: string;
  logs: string[];
  log: (line: string) => void;
  openBot(limits?: Partial<QueueLimits>): Promise<Bot>;
  remove(): void;
}

export async function chatFixture(prefix: string): Promise<ChatFixture> {
  const dir = mkdtempSync(join(tmpdir(), `nocturne-${prefix}-`));
  const modelDir = join(dir, 'model');
  await createTinyModel(modelDir);
  // The untrained model's notes are far apart (up to 8 beats); a fast tempo keeps its audio short,
  // so rendering stays quick on a small machine. The spec does not limit tempo.
  const specPath = join(modelDir, 'model.json');
  const spec = JSON.parse(readFileSync(specPath, 'utf8'));
  for (const c of spec.composers) c.tempoBpm = FAST_TEMPO_BPM;
  writeFileSync(specPath, `${JSON.stringify(spec, null, 2)}\n`);
  const logs: string[] = [];
  const log = (line: string) => {
    logs.push(line);
    if (process.env.NOCTURNE_TEST_LOG === '1') process.stderr.write(`[bot] ${line}\n`);
  };
  const fixture: ChatFixture = {
    dir,
    modelDir,
    dataDir: join(dir, 'data'),
    outDir: join(dir, 'out'),
    logs,
    log,
    openBot: (limits) => Bot.open({ modelDir, dataDir: fixture.dataDir, outDir: fixture.outDir, limits: { batchWindowMs: 20, ...limits }, log }),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
  return fixture;
}

export function isWav(b: Buffer): boolean {
  return b.length > 44 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WAVE' && b.indexOf('data', 12, 'latin1') > 0;
}

export function isOgg(b: Buffer): boolean {
  return b.length > 4096 && b.toString('latin1', 0, 4) === 'OggS' && b.indexOf('\x01vorbis', 0, 'latin1') > 0;
}

export function isPng(b: Buffer): boolean {
  return b.length > 8 && b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
}

/** Notes in a MIDI file, by the project's validating reader (and @tonejs/midi must agree). */
export function midiNoteCount(b: Buffer): number {
  const ours = parseMidi(new Uint8Array(b), 'result.mid').notes.length;
  const theirs = new tonejs.Midi(b).tracks.reduce((n, t) => n + t.notes.length, 0);
  if (ours !== theirs) throw new Error(`MIDI readers disagree: ${ours} vs ${theirs} notes`);
  return ours;
}

/** A solo-piano MIDI with `n` notes (C major scale), for upload tests. */
export function pianoMidi(n = 24): Buffer {
  const midi = new tonejs.Midi();
  midi.header.setTempo(120);
  const track = midi.addTrack();
  const scale = [60, 62, 64, 65, 67, 69, 71, 72];
  for (let i = 0; i < n; i++) track.addNote({ midi: scale[i % scale.length], time: i * 0.25, duration: 0.25, velocity: 0.7 });
  return Buffer.from(midi.toArray());
}

/** A MIDI whose notes are on the drum channel (10): not a piano piece. */
export function drumMidi(): Buffer {
  const midi = new tonejs.Midi();
  const track = midi.addTrack();
  track.channel = 9;
  for (let i = 0; i < 16; i++) track.addNote({ midi: 36 + (i % 3), time: i * 0.25, duration: 0.1, velocity: 0.9 });
  return Buffer.from(midi.toArray());
}

export function writeTemp(dir: string, name: string, bytes: Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}
