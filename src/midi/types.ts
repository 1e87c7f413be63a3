/** One piano note as read from (or written to) a MIDI file. Times are in beats (quarter notes) and seconds. */
export interface PianoNote {
  /** MIDI pitch 0..127 (a piano uses 21..108). */
  pitch: number;
  /** MIDI velocity 1..127. */
  velocity: number;
  /** Onset in quarter-note beats from the start of the file (ticks / ppq). */
  startBeat: number;
  /** Length in quarter-note beats. */
  durationBeats: number;
  /** Onset in seconds (from the tempo map). */
  startSeconds: number;
  /** Length in seconds. */
  durationSeconds: number;
}

/** A parsed, validated solo-piano piece: notes sorted by onset then pitch. */
export interface PianoPiece {
  /** File name (no directories) the piece came from, for messages. */
  name: string;
  notes: PianoNote[];
  /** Seconds from the start to the end of the last note. */
  durationSeconds: number;
  /** Median tempo of the file in beats per minute (weighted by time), for re-synthesis. */
  tempoBpm: number;
}
