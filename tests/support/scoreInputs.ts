/** Hand-built and corpus note sequences for the score tests (tests/score*.test.ts). */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readMidiFile } from '../../src/midi/read.ts';
import type { ScoreInput } from '../../src/render/score.ts';
import { tokenize, type NoteToken } from '../../src/tokens/tokenize.ts';

export const CORPUS = join(import.meta.dirname, '../../../shared/datasets/piano-midi-de/midis');
export const ATTRIBUTION = 'Trained on piano MIDI files by Bernd Krueger, http://www.piano-midi.de, licensed CC BY-SA 3.0 DE';

/** Notes given by absolute onset (steps), pitch and duration → tokens. */
export function tokensOf(notes: readonly { onset: number; pitch: number; dur: number; vel?: number }[]): NoteToken[] {
  const sorted = [...notes].sort((a, b) => a.onset - b.onset || a.pitch - b.pitch);
  return sorted.map((n, i) => ({ dt: i === 0 ? 0 : n.onset - sorted[i - 1].onset, pitch: n.pitch, dur: n.dur, vel: n.vel ?? 4 }));
}

export function input(tokens: NoteToken[], key: number, extra: Partial<ScoreInput> = {}): ScoreInput {
  return { tokens, tempoBpm: 96, key, title: 'nocturne: test & <score>', composer: 'nocturne, in the style of Chopin', attribution: ATTRIBUTION, ...extra };
}

/** A waltz: bass on 1, a chord on 2 and 3, a melody note per bar (3/4). */
export function waltz(bars = 8): NoteToken[] {
  const notes = [];
  for (let b = 0; b < bars; b++) {
    const t = b * 36;
    notes.push({ onset: t, pitch: 43 + (b % 2) * 5, dur: 12, vel: 6 });
    for (const beat of [12, 24]) for (const p of [59, 62, 65]) notes.push({ onset: t + beat, pitch: p, dur: 10, vel: 3 });
    notes.push({ onset: t, pitch: 74 + (b % 3), dur: 30, vel: 5 });
  }
  return tokensOf(notes);
}

/** 4/4 with a half-note melody and a crotchet bass, repeated per bar. */
export function commonTime(bars = 8): NoteToken[] {
  const notes = [];
  for (let b = 0; b < bars; b++) {
    const t = b * 48;
    notes.push({ onset: t, pitch: 48, dur: 12, vel: 6 }, { onset: t + 12, pitch: 55, dur: 12 }, { onset: t + 24, pitch: 52, dur: 12, vel: 5 }, { onset: t + 36, pitch: 55, dur: 12 });
    notes.push({ onset: t, pitch: 72, dur: 24, vel: 6 }, { onset: t + 24, pitch: 76 - (b % 2) * 2, dur: 24 });
  }
  return tokensOf(notes);
}

/** 6/8: a dotted-quarter bass and a quarter-eighth lilt above, repeated per bar. */
export function sixEight(bars = 8): NoteToken[] {
  const notes = [];
  for (let b = 0; b < bars; b++) {
    const t = b * 36;
    notes.push({ onset: t, pitch: 45, dur: 18, vel: 6 }, { onset: t + 18, pitch: 52, dur: 18, vel: 4 });
    notes.push({ onset: t, pitch: 76, dur: 12, vel: 6 }, { onset: t + 12, pitch: 74, dur: 6 }, { onset: t + 18, pitch: 72, dur: 12, vel: 5 }, { onset: t + 30, pitch: 71 + (b % 2), dur: 6 });
  }
  return tokensOf(notes);
}

/** Eighth-note triplets in the right hand over quarter notes in the left (4/4, C major). */
export function triplets(bars = 2): NoteToken[] {
  const notes = [];
  for (let b = 0; b < bars; b++) {
    for (let beat = 0; beat < 4; beat++) {
      const t = b * 48 + beat * 12;
      notes.push({ onset: t, pitch: 48, dur: 12 });
      [72, 76, 79].forEach((p, i) => notes.push({ onset: t + 4 * i, pitch: p, dur: 4 }));
    }
  }
  return tokensOf(notes);
}

/** Long notes across bar lines and values that need ties (a 7-beat note, a 2.5-beat note). */
export function longTies(): NoteToken[] {
  return tokensOf([
    { onset: 0, pitch: 48, dur: 96 },
    { onset: 0, pitch: 72, dur: 30 },
    { onset: 30, pitch: 74, dur: 84 },
    { onset: 114, pitch: 76, dur: 30 },
  ]);
}

/** Wide chords that both hands share, with rests between. */
export function chordsAcrossHands(): NoteToken[] {
  const notes = [];
  for (let i = 0; i < 8; i++) for (const p of [36, 43, 52, 60, 64, 67, 72]) notes.push({ onset: i * 24, pitch: p + (i % 3), dur: 12 });
  return tokensOf(notes);
}

/** A scale in a key with its chromatic neighbours: D major with C# and Bb. */
export function dMajorLine(): NoteToken[] {
  return tokensOf([62, 64, 66, 67, 69, 70, 73, 74].map((pitch, i) => ({ onset: i * 12, pitch, dur: 12 })));
}

/** An excerpt of a piano-midi.de piece: the first `notes` tokens and the file's tempo. */
export async function corpusExcerpt(relative: string, notes: number): Promise<{ tokens: NoteToken[]; tempoBpm: number }> {
  const path = join(CORPUS, relative);
  if (!existsSync(path)) throw new Error(`${path} is missing: the score tests need ../shared/datasets/piano-midi-de`);
  const piece = await readMidiFile(path);
  return { tokens: tokenize(piece.notes).slice(0, notes), tempoBpm: piece.tempoBpm };
}

export interface MeasureXml {
  number: number;
  text: string;
}

export function measures(xml: string): MeasureXml[] {
  return [...xml.matchAll(/<measure number="(\d+)">([\s\S]*?)<\/measure>/g)].map((m) => ({ number: Number(m[1]), text: m[2] }));
}

/** Sum of the durations of one staff in a measure (chord notes counted once). */
export function staffDuration(measure: string, staff: number): number {
  let total = 0;
  for (const [note] of measure.matchAll(/<note>[\s\S]*?<\/note>/g)) {
    if (note.includes('<chord/>') || !note.includes(`<staff>${staff}</staff>`)) continue;
    total += Number(/<duration>(\d+)<\/duration>/.exec(note)![1]);
  }
  return total;
}
