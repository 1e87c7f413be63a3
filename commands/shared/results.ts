/** Finished jobs as platform-neutral posts and lines (pure). */
import { basename, extname } from 'node:path';
import type { JobRecord } from '../../src/jobs/types.ts';
import { resultActions } from './actions.ts';
import type { ResultFile, ResultPost } from './command.ts';

/** The training data's attribution, required by its licence on everything derived from it. */
export const ATTRIBUTION = 'Trained on piano MIDI by Bernd Krueger, http://www.piano-midi.de, CC BY-SA 3.0 DE';

const CONTENT_TYPES: Record<string, string> = {
  '.wav': 'audio/wav',
  '.ogg': 'audio/ogg',
  '.mid': 'audio/midi',
  '.png': 'image/png',
  '.mp3': 'audio/mpeg',
  '.opus': 'audio/ogg',
  '.musicxml': 'application/vnd.recordare.musicxml+xml',
};

/** How a post names each kind of file in its notices. */
export const FILE_LABELS: Record<ResultFile['kind'], string> = {
  audio: 'audio',
  midi: 'MIDI',
  image: 'piano roll',
  'score-picture': 'score picture',
  score: 'MusicXML score',
};

export function contentType(path: string): string {
  return CONTENT_TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream';
}

export function styleName(composer: string): string {
  return composer.toLowerCase() === 'any' ? 'no particular composer' : `in the style of ${composer}`;
}

/** "compose chopin 500 key=\"D minor\" tempo=96 score" as the user would type it, for messages about a job. */
export function requestText(record: JobRecord): string {
  const p = record.params;
  const verb = record.kind === 'compose' ? 'compose' : record.kind;
  const controls = `${p.key ? ` key=${p.key.includes(' ') ? JSON.stringify(p.key) : p.key}` : ''}${p.tempoBpm !== undefined ? ` tempo=${p.tempoBpm}` : ''}${p.score ? ' score' : ''}`;
  return `${verb} ${p.composer} ${p.notes}${controls}${record.parentId ? ` (from job ${record.parentId})` : ''}`;
}

/**
 * The key asked for and, once the piece is written, the one it is in and the one its notes read
 * as: "D minor", "any (estimated C major)", "D minor (estimated F major)", "D minor asked,
 * written in D major" (a model without a key input transposes instead).
 */
export function keyText(record: JobRecord): string {
  const asked = record.params.key ?? 'any';
  const o = record.outputs;
  if (!o?.key) return asked;
  const written = o.key === asked ? asked : `${asked} asked, written in ${o.key}`;
  return o.estimatedKey && o.estimatedKey !== o.key ? `${written} (estimated ${o.estimatedKey})` : written;
}

/** "96 BPM", or whose tempo it is when none was asked for: "120 BPM (Chopin's)". */
export function tempoText(record: JobRecord): string {
  const p = record.params;
  const composer = record.outputs?.composer ?? p.composer;
  const whose = p.seedName ? "the seed's" : composer.toLowerCase() === 'any' ? 'the default' : `${composer}'s`;
  const bpm = record.outputs?.tempoBpm ?? p.tempoBpm;
  if (bpm === undefined) return whose;
  return `${Number(bpm.toFixed(1))} BPM${p.tempoBpm === undefined ? ` (${whose})` : ''}`;
}

/** Whether the piece comes with its score. */
export function scoreText(record: JobRecord): string {
  const o = record.outputs;
  if (o?.score) return 'yes: MusicXML and a picture of its first page';
  if (!record.params.score) return 'no';
  return o ? 'asked for, but not made' : 'yes';
}

export function jobFields(record: JobRecord): [string, string][] {
  const p = record.params;
  const o = record.outputs;
  const fields: [string, string][] = [
    ['Composer', o?.composer ?? p.composer],
    ['Notes', String(o?.noteCount ?? p.notes)],
    ['Temperature', String(p.temperature ?? 1)],
    ['Random seed', String(p.randomSeed)],
    ['Key', keyText(record)],
    ['Tempo', tempoText(record)],
    ['Score', scoreText(record)],
  ];
  const opens = !p.includeSeed ? '' : `, whose ${o?.seedNotes ? `${o.seedNotes} ` : ''}notes open this piece`;
  if (p.seedName) fields.push(['Continues', `${p.seedName}${opens}`]);
  fields.push(['Model', record.modelVersion], ['Job', record.id]);
  if (o) fields.push(['Length', `${formatClock(o.musicSeconds)} of music, composed in ${o.composeSeconds.toFixed(1)} s`]);
  return fields;
}

export function formatClock(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** The post for a finished job; throws if it has no outputs. */
export function resultPost(record: JobRecord): ResultPost {
  const o = record.outputs;
  if (!o) throw new Error(`job ${record.id} has no files`);
  const files: ResultFile[] = [];
  const suffix = (path: string, kind: ResultFile['kind']) => (kind === 'audio' && basename(path).includes('mono') ? '-mono' : kind === 'score-picture' ? '-score' : '');
  const named = (path: string, kind: ResultFile['kind']): ResultFile => ({ path, kind, contentType: contentType(path), name: `nocturne-${record.id}${suffix(path, kind)}${extname(path)}` });
  if (o.audio) files.push(named(o.audio, 'audio'));
  files.push(named(o.midi, 'midi'), named(o.png, 'image'));
  if (o.scorePicture) files.push(named(o.scorePicture, 'score-picture'));
  if (o.score) files.push(named(o.score, 'score'));
  return {
    jobId: record.id,
    title: `${record.kind === 'continue' ? 'Continuation' : record.kind === 'variation' ? 'Variation' : 'Piece'} ${styleName(o.composer)}, ${o.noteCount} notes`,
    fields: jobFields(record),
    files,
    notice: [o.audioNote, o.keyNote].filter((n) => n !== undefined).join('; ') || undefined,
    attribution: ATTRIBUTION,
    actions: resultActions(record.id),
  };
}

/** One line for a failed job. */
export function failureLine(record: JobRecord): string {
  if (record.errorKind === 'input') return record.error ?? 'that request cannot be composed';
  if (record.errorKind === 'interrupted') return `sorry: job ${record.id} (${requestText(record)}) was interrupted by a restart; please ask again`;
  return `sorry: job ${record.id} failed (${record.error ?? 'unknown error'}); please try again`;
}
