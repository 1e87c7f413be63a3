/** The MusicXML score (src/render/score.ts): metre, bars, key, spelling, tuplets, ties, chords, hands. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { layoutScore, scoreToMusicXml } from '../src/render/score.ts';
import { spellPitch, keyFifths } from '../src/render/score/spelling.ts';
import { chooseMetre } from '../src/render/score/metre.ts';
import { timedNotes } from '../src/render/score/notes.ts';
import { straightValues } from '../src/render/score/rhythm.ts';
import { METRES } from '../src/render/score/metre.ts';
import { ANY_KEY, parseKey } from '../src/tokens/key.ts';
import { chordsAcrossHands, commonTime, dMajorLine, input, longTies, measures, sixEight, staffDuration, tokensOf, triplets, waltz } from './support/scoreInputs.ts';

const D_MAJOR = parseKey('D major')!;
const C_MAJOR = parseKey('C major')!;

test('the time signature follows the piece: waltz 3/4, common time 4/4, a 6/8 lilt', () => {
  assert.equal(chooseMetre(timedNotes(waltz())).metre.name, '3/4');
  assert.equal(chooseMetre(timedNotes(commonTime())).metre.name, '4/4');
  assert.equal(chooseMetre(timedNotes(sixEight())).metre.name, '6/8');
  const xml = scoreToMusicXml(input(waltz(), C_MAJOR));
  assert.match(xml, /<time><beats>3<\/beats><beat-type>4<\/beat-type><\/time>/);
  assert.match(scoreToMusicXml(input(sixEight(), C_MAJOR)), /<time><beats>6<\/beats><beat-type>8<\/beat-type><\/time>/);
});

test('a pickup is placed after rests so that the strong notes fall on the downbeat', () => {
  // The waltz shifted by one beat: its first bar opens with one beat of rest... or rather, the piece starts on beat 3.
  const shifted = waltz().slice();
  const upbeat = tokensOf([{ onset: 0, pitch: 71, dur: 12 }]);
  const tokens = [upbeat[0], { ...shifted[0], dt: 12 }, ...shifted.slice(1)];
  const layout = layoutScore(input(tokens, C_MAJOR));
  assert.equal(layout.metre.name, '3/4');
  assert.equal(layout.offset, 24);
});

test('every bar of both staves adds up to the time signature, and <backup> spans the bar', () => {
  for (const [tokens, bar] of [[waltz(), 36], [commonTime(), 48], [sixEight(), 36], [triplets(), 48], [longTies(), 48], [chordsAcrossHands(), 48]] as const) {
    const xml = scoreToMusicXml(input([...tokens], C_MAJOR, bar === 48 ? { timeSignature: '4/4', barOffset: 0 } : {}));
    for (const m of measures(xml)) {
      assert.equal(staffDuration(m.text, 1), bar, `measure ${m.number}, treble`);
      assert.equal(staffDuration(m.text, 2), bar, `measure ${m.number}, bass`);
      assert.match(m.text, new RegExp(`<backup><duration>${bar}</duration></backup>`));
    }
  }
});

test('the key signature is the key\'s: fifths and mode', () => {
  assert.match(scoreToMusicXml(input(dMajorLine(), D_MAJOR)), /<key><fifths>2<\/fifths><mode>major<\/mode><\/key>/);
  assert.match(scoreToMusicXml(input(dMajorLine(), parseKey('Bb major')!)), /<fifths>-2<\/fifths>/);
  assert.match(scoreToMusicXml(input(dMajorLine(), parseKey('C# minor')!)), /<fifths>4<\/fifths><mode>minor<\/mode>/);
  assert.match(scoreToMusicXml(input(dMajorLine(), parseKey('Eb minor')!)), /<fifths>-6<\/fifths>/);
  assert.equal(keyFifths(parseKey('Db major')!), -5);
  assert.equal(keyFifths(parseKey('C# major')!), -5, 'C# major is written as Db major');
  // "any": estimated from the notes (a D major scale).
  assert.match(scoreToMusicXml(input(tokensOf([62, 64, 66, 67, 69, 71, 73, 74, 66, 69, 62].map((pitch, i) => ({ onset: i * 12, pitch, dur: 12 }))), ANY_KEY)), /<fifths>2<\/fifths>/);
});

test('spelling in D major: C# has no accidental, Bb has a flat, and an accidental lasts the bar', () => {
  const xml = scoreToMusicXml(input(dMajorLine(), D_MAJOR, { timeSignature: '4/4', barOffset: 0 }));
  const notes = [...xml.matchAll(/<note>[\s\S]*?<\/note>/g)].map((m) => m[0]).filter((n) => n.includes('<pitch>'));
  const cSharp = notes.find((n) => n.includes('<step>C</step>') && n.includes('<alter>1</alter>'))!;
  assert.ok(cSharp, 'C# is spelled as C with alter 1');
  assert.doesNotMatch(cSharp, /<accidental>/);
  const bFlat = notes.find((n) => n.includes('<step>B</step>'))!;
  assert.match(bFlat, /<alter>-1<\/alter>/);
  assert.match(bFlat, /<accidental>flat<\/accidental>/);
  const fSharp = notes.find((n) => n.includes('<step>F</step>'))!;
  assert.match(fSharp, /<alter>1<\/alter>/);
  assert.doesNotMatch(fSharp, /<accidental>/);
  // The same note twice in a bar: the second needs no sign; a natural cancels it.
  const repeated = scoreToMusicXml(input(tokensOf([70, 70, 71, 70].map((pitch, i) => ({ onset: i * 12, pitch, dur: 12 }))), D_MAJOR, { timeSignature: '4/4', barOffset: 0 }));
  assert.deepEqual([...repeated.matchAll(/<accidental>(\w+)<\/accidental>/g)].map((m) => m[1]), ['flat', 'natural', 'flat']);
});

test('spelling: sharps in sharp keys, flats in flat keys, the leading tone of a minor key raised', () => {
  const name = (pitch: number, key: string) => {
    const s = spellPitch(pitch, parseKey(key)!);
    return `${s.step}${['bb', 'b', '', '#', '##'][s.alter + 2]}${s.octave}`;
  };
  assert.equal(name(66, 'E major'), 'F#4');
  assert.equal(name(63, 'E major'), 'D#4');
  assert.equal(name(63, 'Eb major'), 'Eb4');
  assert.equal(name(68, 'Ab major'), 'Ab4');
  assert.equal(name(61, 'Db major'), 'Db4');
  assert.equal(name(61, 'D minor'), 'C#4');
  assert.equal(name(67, 'G# minor'), 'F##4');
  assert.equal(name(59, 'Eb minor'), 'Cb4', 'Cb4 is MIDI 59');
  assert.equal(name(70, 'Gb major'), 'A#4', 'Gb major is written as F# major');
  assert.equal(name(60, 'C# minor'), 'B#3', 'B#3 is MIDI 60');
  assert.equal(name(60, 'C major'), 'C4');
});

test('triplets get <time-modification> 3:2 and a bracket from the first to the last note of the beat', () => {
  const xml = scoreToMusicXml(input(triplets(), C_MAJOR, { timeSignature: '4/4', barOffset: 0 }));
  const treble = [...xml.matchAll(/<note>[\s\S]*?<\/note>/g)].map((m) => m[0]).filter((n) => n.includes('<staff>1</staff>'));
  assert.equal(treble.length, 24);
  for (const n of treble) {
    assert.match(n, /<duration>4<\/duration>/);
    assert.match(n, /<type>eighth<\/type>/);
    assert.match(n, /<time-modification><actual-notes>3<\/actual-notes><normal-notes>2<\/normal-notes><normal-type>eighth<\/normal-type><\/time-modification>/);
  }
  assert.equal(treble.filter((n) => n.includes('<tuplet type="start" bracket="yes"/>')).length, 8);
  assert.equal(treble.filter((n) => n.includes('<tuplet type="stop"/>')).length, 8);
  assert.match(treble[0], /<beam number="1">begin<\/beam>/);
  assert.match(treble[2], /<beam number="1">end<\/beam>/);
  // The bass quarters are not in a tuplet.
  const bass = [...xml.matchAll(/<note>[\s\S]*?<\/note>/g)].map((m) => m[0]).filter((n) => n.includes('<staff>2</staff>'));
  assert.ok(bass.length === 8 && bass.every((n) => !n.includes('<time-modification>')));
});

test('sixteenth triplets and straight sixteenths in one bar', () => {
  const tokens = tokensOf([
    ...[0, 2, 4, 6, 8, 10].map((t) => ({ onset: t, pitch: 72, dur: 2 })),
    ...[12, 15, 18, 21].map((t) => ({ onset: t, pitch: 74, dur: 3 })),
    { onset: 24, pitch: 76, dur: 24 },
  ]);
  const layout = layoutScore(input(tokens, C_MAJOR, { timeSignature: '4/4', barOffset: 0 }));
  const treble = layout.bars[0].treble;
  assert.deepEqual(treble.slice(0, 6).map((p) => [p.type, p.tuplet !== undefined]), Array(6).fill(['16th', true]));
  assert.deepEqual(treble.slice(6, 10).map((p) => [p.type, p.tuplet !== undefined]), Array(4).fill(['16th', false]));
  assert.deepEqual(treble[6].beams, ['begin', 'begin']);
  assert.deepEqual([treble[10].type, treble[10].dots], ['half', 0]);
});

test('ties: across bar lines and inside a bar for values no single note can show', () => {
  const layout = layoutScore(input(longTies(), C_MAJOR, { timeSignature: '4/4', barOffset: 0 }));
  const bass = layout.bars.map((b) => b.bass);
  // A note of 96 steps from the downbeat: two tied whole notes.
  assert.deepEqual([bass[0][0].type, bass[0][0].tieStart, bass[0][0].tieStop], ['whole', true, false]);
  assert.deepEqual([bass[1][0].type, bass[1][0].tieStart, bass[1][0].tieStop], ['whole', false, true]);
  // 30 steps from 0: half + eighth, tied.
  const t = layout.bars[0].treble;
  assert.deepEqual(t.slice(0, 2).map((p) => [p.type, p.dots, p.tieStart, p.tieStop]), [['half', 0, true, false], ['eighth', 0, false, true]]);
  const xml = scoreToMusicXml(input(longTies(), C_MAJOR, { timeSignature: '4/4', barOffset: 0 }));
  assert.equal((xml.match(/<tie type="start"\/>/g) ?? []).length, (xml.match(/<tied type="start"\/>/g) ?? []).length);
  assert.equal((xml.match(/<tie type="start"\/>/g) ?? []).length, (xml.match(/<tie type="stop"\/>/g) ?? []).length);
  assert.ok((xml.match(/<tie type="start"\/>/g) ?? []).length >= 5);
});

test('straight values show the beat: an off-beat quarter in 4/4 is two tied eighths', () => {
  const m = METRES['4/4'];
  assert.deepEqual(straightValues(6, 18, m), [{ start: 6, dur: 6 }, { start: 12, dur: 6 }]);
  assert.deepEqual(straightValues(12, 36, m), [{ start: 12, dur: 12 }, { start: 24, dur: 12 }]);
  assert.deepEqual(straightValues(0, 36, m), [{ start: 0, dur: 36 }]);
  assert.deepEqual(straightValues(12, 30, METRES['6/8']), [{ start: 12, dur: 6 }, { start: 18, dur: 12 }]);
});

test('chords: notes sharing an onset in one staff are one chord; a wide chord is shared by the hands', () => {
  const xml = scoreToMusicXml(input(chordsAcrossHands(), C_MAJOR, { timeSignature: '4/4', barOffset: 0 }));
  const first = measures(xml)[0].text;
  const [treble, bass] = first.split('<backup>');
  const firstTrebleChord = treble.match(/<note>[\s\S]*?<\/note>/g)!.slice(0, 5);
  assert.equal(firstTrebleChord.filter((n) => n.includes('<chord/>')).length, 3, 'C4 E4 G4 C5 in the treble: one note and three <chord/>');
  assert.ok(!firstTrebleChord[0].includes('<chord/>'));
  assert.match(bass, /<step>C<\/step><octave>2<\/octave>[\s\S]*?<chord\/><pitch><step>G<\/step><octave>2<\/octave>[\s\S]*?<chord\/><pitch><step>E<\/step><octave>3<\/octave>/);
});

test('hand split: a low line in the bass, a high line in the treble, crossing middle C with continuity', () => {
  const tokens = tokensOf([
    ...[48, 50, 52, 53, 55, 57, 59, 60].map((pitch, i) => ({ onset: i * 12, pitch, dur: 12 })),
    ...[76, 74, 72, 71, 69, 67, 65, 64].map((pitch, i) => ({ onset: i * 12, pitch: pitch + 3, dur: 12 })),
  ]);
  const layout = layoutScore(input(tokens, C_MAJOR, { timeSignature: '4/4', barOffset: 0 }));
  const pitches = (staff: 'treble' | 'bass') => layout.bars.flatMap((b) => b[staff]).flatMap((p) => p.pitches);
  assert.ok(pitches('bass').every((p) => p <= 60), `bass ${pitches('bass')}`);
  assert.ok(pitches('treble').every((p) => p >= 67), `treble ${pitches('treble')}`);
  assert.ok(pitches('bass').includes(60), 'the rising bass line stays in the bass past middle C');
});

test('tempo mark and sound, title, composer and attribution, all escaped', () => {
  const xml = scoreToMusicXml(input(sixEight(), C_MAJOR, { tempoBpm: 90 }));
  assert.match(xml, /<metronome><beat-unit>quarter<\/beat-unit><beat-unit-dot\/><per-minute>60<\/per-minute><\/metronome>/);
  assert.match(xml, /<sound tempo="90"\/>/);
  assert.match(xml, /<work-title>nocturne: test &amp; &lt;score&gt;<\/work-title>/);
  assert.match(xml, /<creator type="composer">nocturne, in the style of Chopin<\/creator>/);
  assert.match(xml, /<rights>Trained on piano MIDI files by Bernd Krueger, http:\/\/www.piano-midi.de/);
  assert.match(scoreToMusicXml(input(commonTime(), C_MAJOR)), /<metronome><beat-unit>quarter<\/beat-unit><per-minute>96<\/per-minute>/);
});

test('the same notes give the same document; bad input is refused', () => {
  assert.equal(scoreToMusicXml(input(waltz(), C_MAJOR)), scoreToMusicXml(input(waltz(), C_MAJOR)));
  assert.throws(() => scoreToMusicXml(input([], C_MAJOR)), /no notes/);
  assert.throws(() => scoreToMusicXml(input(waltz(), C_MAJOR, { tempoBpm: 0 })), /tempo/);
  assert.throws(() => scoreToMusicXml(input(waltz(), 30)), /key index/);
});
