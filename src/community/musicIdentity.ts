/**
 * What makes two MIDI files "the same music" for duplicate refusal. Bytes are no use: a re-saved
 * file (another editor, another resolution, another tempo, renamed tracks) differs in every byte.
 * Both hashes are taken over note-tuple tokens, which are timed in beats on the model's grid:
 *   music  tokenHash: the same notes, rhythm and dynamics (what the model would learn);
 *   notes  the same notes and rhythm whatever the dynamics (a copy with velocities re-scaled).
 * Tempo changes alone never change the tokens, so they are covered by both.
 */
import { tokenHash, type NoteToken } from '../tokens/tokenize.ts';

export interface MusicIdentity {
  music: string;
  notes: string;
}

export function musicIdentity(tokens: readonly NoteToken[]): MusicIdentity {
  return { music: tokenHash(tokens), notes: tokenHash(tokens.map((t) => ({ ...t, vel: 0 }))) };
}
