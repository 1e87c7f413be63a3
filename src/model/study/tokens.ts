/**
 * The original study's representation, reproduced as the baseline to beat:
 *   - one token per onset ("event"): a single note is its name with octave ("C4", "F#5");
 *     a chord (two or more notes at one onset) is its sorted pitch-class set ("0.4.7"),
 *     so the chord's octave and voicing are lost;
 *   - no timing: events are played a fixed half beat apart, every note lasts half a beat;
 *   - no dynamics: every note has velocity 64.
 * Notes sharing an onset are those of one quantised onset of the note-tuple tokens (1/12 beat).
 * Events too rare in the training data map to the unknown token, which decodes to silence.
 */
import type { PianoNote } from '../../midi/types.ts';
import type { NoteToken } from '../../tokens/tokenize.ts';

/** Written into model.json; keeps the architecture's first name ("seed") so that older folders load. */
export const STUDY_TOKEN_SCHEME = 'seed-note-or-pitch-class-chord-v1';
export const UNKNOWN_EVENT = '<unk>';
export const EVENT_SPACING_BEATS = 0.5;
export const EVENT_DURATION_BEATS = 0.5;
export const EVENT_VELOCITY = 64;
/** Octave that chord pitch classes are placed in when played back (MIDI 60..71). */
export const CHORD_OCTAVE = 4;

/** Everything a study model folder must agree on with this code. */
export function studyTokenSpec() {
  return {
    scheme: STUDY_TOKEN_SCHEME,
    unknown: UNKNOWN_EVENT,
    eventSpacingBeats: EVENT_SPACING_BEATS,
    eventDurationBeats: EVENT_DURATION_BEATS,
    velocity: EVENT_VELOCITY,
    chordOctave: CHORD_OCTAVE,
  };
}

const NAMES = ['C', 'C#', 'D', 'D#', 'E', 'F', 'F#', 'G', 'G#', 'A', 'A#', 'B'] as const;

/** MIDI pitch → scientific name (60 → "C4", 61 → "C#4", 21 → "A0"). */
export function pitchName(pitch: number): string {
  return `${NAMES[pitch % 12]}${Math.floor(pitch / 12) - 1}`;
}

/** Scientific name → MIDI pitch, or undefined for anything else. */
export function pitchFromName(name: string): number | undefined {
  const m = /^([A-G]#?)(-?\d+)$/.exec(name);
  if (!m) return undefined;
  const pc = (NAMES as readonly string[]).indexOf(m[1]);
  if (pc < 0) return undefined;
  const pitch = (Number(m[2]) + 1) * 12 + pc;
  return pitch >= 0 && pitch <= 127 ? pitch : undefined;
}

/** The event token for the pitches sounding at one onset. */
export function eventForPitches(pitches: readonly number[]): string {
  const distinct = [...new Set(pitches)];
  if (distinct.length === 0) throw new Error('study tokens: an onset needs at least one pitch');
  if (distinct.length === 1) return pitchName(distinct[0]);
  return [...new Set(distinct.map((p) => p % 12))].sort((a, b) => a - b).join('.');
}

/** Note-tuple tokens → one event per onset (a run of dt = 0 tokens is one chord). */
export function studyEvents(tokens: readonly NoteToken[]): string[] {
  const events: string[] = [];
  let chord: number[] = [];
  tokens.forEach((t, i) => {
    if (i > 0 && t.dt > 0) {
      events.push(eventForPitches(chord));
      chord = [];
    }
    chord.push(t.pitch);
  });
  if (chord.length) events.push(eventForPitches(chord));
  return events;
}

/** The pitches an event plays: a note's own pitch, or a chord's classes in octave 4. */
export function eventPitches(event: string): number[] {
  if (event === UNKNOWN_EVENT) return [];
  const pitch = pitchFromName(event);
  if (pitch !== undefined) return [pitch];
  if (!/^\d{1,2}(\.\d{1,2})*$/.test(event)) throw new Error(`study tokens: ${JSON.stringify(event)} is neither a note name nor a pitch-class set`);
  return event.split('.').map((pc) => {
    const c = Number(pc);
    if (c > 11) throw new Error(`study tokens: pitch class ${c} in ${JSON.stringify(event)} is not 0..11`);
    return (CHORD_OCTAVE + 1) * 12 + c;
  });
}

/**
 * Events → notes as the study played them: one onset every half beat, every note half a beat
 * long at velocity 64; the unknown token is a silent step.
 */
export function eventsToNotes(events: readonly string[], tempoBpm = 120): PianoNote[] {
  const secondsPerBeat = 60 / tempoBpm;
  const notes: PianoNote[] = [];
  events.forEach((event, i) => {
    const startBeat = i * EVENT_SPACING_BEATS;
    for (const pitch of eventPitches(event))
      notes.push({
        pitch,
        velocity: EVENT_VELOCITY,
        startBeat,
        durationBeats: EVENT_DURATION_BEATS,
        startSeconds: startBeat * secondsPerBeat,
        durationSeconds: EVENT_DURATION_BEATS * secondsPerBeat,
      });
  });
  return notes;
}

/**
 * The vocabulary of a training set: the unknown token first, then every event seen at least
 * `minCount` times, sorted so that the same data always gives the same numbering.
 */
export function buildVocabulary(sequences: readonly (readonly string[])[], minCount = 2): string[] {
  const counts = new Map<string, number>();
  for (const s of sequences) for (const e of s) counts.set(e, (counts.get(e) ?? 0) + 1);
  const kept = [...counts.entries()].filter(([e, c]) => c >= minCount && e !== UNKNOWN_EVENT).map(([e]) => e);
  return [UNKNOWN_EVENT, ...kept.sort()];
}

/** Events → vocabulary indices (unknown events → 0). */
export function encodeEvents(events: readonly string[], vocabulary: readonly string[]): Int32Array {
  const index = new Map(vocabulary.map((e, i) => [e, i]));
  const unknown = index.get(UNKNOWN_EVENT) ?? 0;
  return Int32Array.from(events, (e) => index.get(e) ?? unknown);
}
