/**
 * What makes two MIDI files "the same music" for duplicate refusal. Bytes are no use: a re-saved
 * file (another editor, another resolution, another tempo, renamed tracks) differs in every byte.
 * Both hashes are taken over note-tuple tokens, which are timed in beats on the model's grid:
 *   music  tokenHash: the same notes, rhythm and dynamics (what the model would learn);
 *   shape  the same rhythm, durations and intervals whatever the key and the dynamics: a copy
 *          transposed or with its velocities re-scaled (training already transposes pieces by a
 *          few semitones, so such a copy teaches the model nothing new).
 * Tempo changes alone never change the tokens, so they are covered by both. Not caught: a copy
 * transposed so far that notes leave the piano range (they are folded back by octaves), or one
 * with notes added, removed or moved (that is an arrangement, and the drift check still sees it).
 */
import { tokenHash, type NoteToken } from '../tokens/tokenize.ts';

export interface MusicIdentity {
  music: string;
  shape: string;
}

export function musicIdentity(tokens: readonly NoteToken[]): MusicIdentity {
  const lowest = tokens.reduce((m, t) => Math.min(m, t.pitch), Infinity);
  return { music: tokenHash(tokens), shape: tokenHash(tokens.map((t) => ({ ...t, pitch: t.pitch - lowest, vel: 0 }))) };
}
