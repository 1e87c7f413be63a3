/** Writes notes to a one-track piano MIDI file (with title and attribution text events). */
import tonejs from '@tonejs/midi';
import type { PianoNote } from './types.ts';
import { writeFileAtomic } from '../storage/files.ts';

const { Midi } = tonejs as unknown as { Midi: typeof import('@tonejs/midi').Midi };
export const PPQ = 480;

export interface MidiMeta {
  title: string;
  /** Free text, e.g. the model version and parameters. */
  comment?: string;
  copyright?: string;
}

/** Encodes notes (timed in beats) at a constant tempo. */
export function encodeMidi(notes: readonly PianoNote[], tempoBpm: number, meta: MidiMeta): Uint8Array {
  const midi = new Midi();
  midi.header.setTempo(tempoBpm);
  midi.header.name = meta.title;
  if (meta.copyright) midi.header.meta.push({ type: 'copyrightNotice', text: meta.copyright, ticks: 0 });
  if (meta.comment) midi.header.meta.push({ type: 'text', text: meta.comment, ticks: 0 });
  midi.header.update();
  const track = midi.addTrack();
  track.name = 'Piano';
  track.channel = 0;
  track.instrument.number = 0;
  for (const n of notes) {
    track.addNote({
      midi: n.pitch,
      ticks: Math.round(n.startBeat * PPQ),
      durationTicks: Math.max(1, Math.round(n.durationBeats * PPQ)),
      velocity: n.velocity / 127,
    });
  }
  return midi.toArray();
}

export async function writeMidi(path: string, notes: readonly PianoNote[], tempoBpm: number, meta: MidiMeta): Promise<void> {
  await writeFileAtomic(path, encodeMidi(notes, tempoBpm, meta));
}
