/**
 * MusicXML 4.0 text for a laid-out score (see layout.ts): one part, two staves, voice 1 in the
 * treble and voice 5 in the bass, <backup> between them. Elements follow the schema's order.
 */
import type { Metre } from './metre.ts';
import type { NotatedPiece } from './rhythm.ts';
import { BarAccidentals, spellPitch } from './spelling.ts';
import { BASS, TREBLE, type Staff } from './hands.ts';
import { STEPS } from './notes.ts';

export interface ScoreLayout {
  title: string;
  composer: string;
  attribution: string;
  tempoBpm: number;
  keyIndex: number;
  fifths: number;
  mode: 'major' | 'minor';
  metre: Metre;
  /** Rest steps before the first note. */
  offset: number;
  bars: { treble: NotatedPiece[]; bass: NotatedPiece[]; dynamic?: string }[];
}

const VOICE: Readonly<Record<Staff, number>> = { [TREBLE]: 1, [BASS]: 5 };

export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

const tag = (name: string, content: string | number, attrs = '') => `<${name}${attrs}>${content}</${name}>`;

function headerXml(s: ScoreLayout): string {
  return [
    '<?xml version="1.0" encoding="UTF-8" standalone="no"?>',
    '<!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 4.0 Partwise//EN" "http://www.musicxml.org/dtds/partwise.dtd">',
    '<score-partwise version="4.0">',
    `  <work>${tag('work-title', escapeXml(s.title))}</work>`,
    '  <identification>',
    `    ${tag('creator', escapeXml(s.composer), ' type="composer"')}`,
    `    ${tag('rights', escapeXml(s.attribution))}`,
    `    <encoding>${tag('software', 'nocturne')}</encoding>`,
    '  </identification>',
    `  <credit page="1">${tag('credit-type', 'title')}${tag('credit-words', escapeXml(s.title), ' default-x="600" default-y="1600" justify="center" valign="top" font-size="20"')}</credit>`,
    `  <credit page="1">${tag('credit-type', 'composer')}${tag('credit-words', escapeXml(s.composer), ' default-x="600" default-y="1540" justify="center" valign="top" font-size="10"')}</credit>`,
    '  <part-list>',
    '    <score-part id="P1"><part-name>Piano</part-name><score-instrument id="P1-I1"><instrument-name>Piano</instrument-name></score-instrument><midi-instrument id="P1-I1"><midi-channel>1</midi-channel><midi-program>1</midi-program></midi-instrument></score-part>',
    '  </part-list>',
  ].join('\n');
}

function attributesXml(s: ScoreLayout): string {
  return [
    '<attributes>',
    tag('divisions', STEPS),
    `<key>${tag('fifths', s.fifths)}${tag('mode', s.mode)}</key>`,
    `<time>${tag('beats', s.metre.beats)}${tag('beat-type', s.metre.beatType)}</time>`,
    tag('staves', 2),
    `<clef number="1">${tag('sign', 'G')}${tag('line', 2)}</clef>`,
    `<clef number="2">${tag('sign', 'F')}${tag('line', 4)}</clef>`,
    '</attributes>',
  ].join('');
}

/** Tempo mark: a quarter (or dotted quarter in 6/8) per minute, and <sound tempo> in quarters per minute. */
function tempoXml(s: ScoreLayout): string {
  const perBeat = s.metre.compound ? (s.tempoBpm * STEPS) / s.metre.beatSteps : s.tempoBpm;
  const unit = `${tag('beat-unit', 'quarter')}${s.metre.compound ? '<beat-unit-dot/>' : ''}`;
  const tempo = Math.round(s.tempoBpm * 100) / 100;
  return `<direction placement="above"><direction-type><metronome>${unit}${tag('per-minute', Math.round(perBeat))}</metronome></direction-type>${tag('staff', 1)}<sound tempo="${tempo}"/></direction>`;
}

function dynamicXml(mark: string): string {
  return `<direction placement="below"><direction-type><dynamics><${mark}/></dynamics></direction-type>${tag('staff', 1)}</direction>`;
}

function notationsXml(p: NotatedPiece, first: boolean): string {
  const parts: string[] = [];
  if (p.tieStop) parts.push('<tied type="stop"/>');
  if (p.tieStart) parts.push('<tied type="start"/>');
  if (first && p.tuplet?.start) parts.push('<tuplet type="start" bracket="yes"/>');
  if (first && p.tuplet?.stop) parts.push('<tuplet type="stop"/>');
  if (first && p.staccato && p.pitches.length) parts.push('<articulations><staccato/></articulations>');
  return parts.length ? `<notations>${parts.join('')}</notations>` : '';
}

function restXml(p: NotatedPiece, staff: Staff): string {
  const rest = p.measureRest ? '<rest measure="yes"/>' : '<rest/>';
  const type = p.measureRest ? '' : tag('type', p.type) + '<dot/>'.repeat(p.dots);
  return `<note>${rest}${tag('duration', p.dur)}${tag('voice', VOICE[staff])}${type}${timeModXml(p)}${tag('staff', staff)}${notationsXml(p, true)}</note>`;
}

function timeModXml(p: NotatedPiece): string {
  if (!p.tuplet) return '';
  return `<time-modification>${tag('actual-notes', 3)}${tag('normal-notes', 2)}${tag('normal-type', p.tuplet.normalType)}</time-modification>`;
}

function chordXml(p: NotatedPiece, staff: Staff, keyIndex: number, accidentals: BarAccidentals): string {
  return p.pitches
    .map((pitch, i) => {
      const sp = spellPitch(pitch, keyIndex);
      const acc = accidentals.accidental(sp, p.tieStop);
      const ties = (p.tieStop ? '<tie type="stop"/>' : '') + (p.tieStart ? '<tie type="start"/>' : '');
      return [
        '<note>',
        i > 0 ? '<chord/>' : '',
        `<pitch>${tag('step', sp.step)}${sp.alter ? tag('alter', sp.alter) : ''}${tag('octave', sp.octave)}</pitch>`,
        tag('duration', p.dur),
        ties,
        tag('voice', VOICE[staff]),
        tag('type', p.type),
        '<dot/>'.repeat(p.dots),
        acc ? tag('accidental', acc) : '',
        timeModXml(p),
        tag('staff', staff),
        i === 0 ? p.beams.map((b, level) => tag('beam', b, ` number="${level + 1}"`)).join('') : '',
        notationsXml(p, i === 0),
        '</note>',
      ].join('');
    })
    .join('\n      ');
}

function staffXml(pieces: readonly NotatedPiece[], staff: Staff, s: ScoreLayout): string {
  const accidentals = new BarAccidentals(s.fifths);
  return pieces.map((p) => (p.pitches.length ? chordXml(p, staff, s.keyIndex, accidentals) : restXml(p, staff))).join('\n      ');
}

function measureXml(s: ScoreLayout, index: number): string {
  const bar = s.bars[index];
  const last = index === s.bars.length - 1;
  return [
    `    <measure number="${index + 1}">`,
    index === 0 ? `      ${attributesXml(s)}\n      ${tempoXml(s)}` : '',
    bar.dynamic ? `      ${dynamicXml(bar.dynamic)}` : '',
    `      ${staffXml(bar.treble, TREBLE, s)}`,
    `      <backup>${tag('duration', s.metre.barSteps)}</backup>`,
    `      ${staffXml(bar.bass, BASS, s)}`,
    last ? `      <barline location="right">${tag('bar-style', 'light-heavy')}</barline>` : '',
    '    </measure>',
  ]
    .filter(Boolean)
    .join('\n');
}

/** The whole document. */
export function musicXmlText(s: ScoreLayout): string {
  const measures = s.bars.map((_, i) => measureXml(s, i));
  return `${headerXml(s)}\n  <part id="P1">\n${measures.join('\n')}\n  </part>\n</score-partwise>\n`;
}
