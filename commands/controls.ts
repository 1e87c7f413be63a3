/**
 * The musical controls of a piece (issue 10), declared once: `key`, `tempo` and `score`. /compose
 * and /continue list these options, and every front end renders them from here: Discord as slash
 * options (the key autocompleted over its 25 choices), Slack and the terminal as typed
 * `key="D minor" tempo=96 score`. Variation and Regenerate keep the controls of the piece they act
 * on (commands/shared/actions.ts), so the same random seed gives the same notes.
 */
import { TEMPO_MAX_BPM, TEMPO_MIN_BPM } from '../src/engine/types.ts';
import { ANY_KEY, KEYS, KEY_EXPECTED, keyName, parseKey } from '../src/tokens/key.ts';
import type { ServerSettings } from '../src/jobs/store.ts';
import type { JobParams } from '../src/jobs/types.ts';
import type { CommandRequest, OptionChoice, OptionSpec } from './shared/command.ts';

const SHARP_NAMES = ['C#', 'D#', 'F#', 'G#', 'A#'];
const FLAT_NAMES = ['Db', 'Eb', 'Gb', 'Ab', 'Bb'];

/** A key's name and, when its tonic is a black key, its other spelling: ["C# major", "Db major"]. */
export function keySpellings(index: number): string[] {
  const name = keyName(index);
  const [tonic, mode] = name.split(' ');
  const sharp = SHARP_NAMES.indexOf(tonic);
  const flat = FLAT_NAMES.indexOf(tonic);
  const other = sharp >= 0 ? FLAT_NAMES[sharp] : flat >= 0 ? SHARP_NAMES[flat] : undefined;
  return other ? [name, `${other} ${mode}`] : [name];
}

/** The order keys are offered in: by tonic from C, major before minor. */
const KEYS_BY_TONIC = [...KEYS].sort((a, b) => a.tonic - b.tonic || a.index - b.index);

/** The 25 choices: "any", then the 24 keys, each shown with its other spelling ("C# major / Db major"). */
export const KEY_CHOICES: readonly OptionChoice[] = Object.freeze([
  { name: 'any', value: 'any' },
  ...KEYS_BY_TONIC.map((k) => ({ name: keySpellings(k.index).join(' / '), value: k.name })),
]);

/** Typed text as spellings are compared: lower case, no spaces, ♯ and ♭ as # and b. */
const squash = (text: string) => text.toLowerCase().replace(/♯/g, '#').replace(/♭/g, 'b').replace(/\s+/g, '');

const SPELLINGS = new Map<string | number, string[]>([['any', ['any']], ...KEYS.map((k) => [k.name, keySpellings(k.index).map(squash)] as [string, string[]])]);

/**
 * The key choices for what a member has typed: the key it already names first ("dbm" is C#
 * minor, "f#" F# major), then every choice one of whose spellings starts with it.
 */
export function keyChoices(typed: string): OptionChoice[] {
  const t = squash(typed);
  if (t === '') return [...KEY_CHOICES];
  const index = parseKey(typed);
  const named = index === undefined ? undefined : index === ANY_KEY ? 'any' : keyName(index);
  const matching = KEY_CHOICES.filter((c) => c.value === named || SPELLINGS.get(c.value)!.some((s) => s.startsWith(t)));
  return matching.sort((a, b) => Number(b.value === named) - Number(a.value === named));
}

/** A typed key in the spelling kept ("Db major" → "C# major", "f#m" → "F# minor", "any"), or undefined. */
export function canonicalKey(text: string): string | undefined {
  const index = parseKey(text);
  return index === undefined ? undefined : keyName(index);
}

export const keyOption: OptionSpec = {
  name: 'key',
  kind: 'string',
  description: 'one of the 24 major and minor keys, e.g. "D minor", "Db major", "f#m"; default any',
  max: 20,
  named: true,
  autocomplete: (typed) => keyChoices(typed),
  parse: canonicalKey,
  expects: KEY_EXPECTED,
};

export const tempoOption: OptionSpec = {
  name: 'tempo',
  kind: 'number',
  description: "beats per minute; default the composer's (or the seed's) tempo",
  min: TEMPO_MIN_BPM,
  max: TEMPO_MAX_BPM,
  named: true,
};

export const scoreOption: OptionSpec = {
  name: 'score',
  kind: 'boolean',
  description: "also post the score: MusicXML and a picture of its first page; default: the /settings that apply",
  named: true,
};

/** The controls, in the order commands list them (after their own options). */
export const CONTROL_OPTIONS: readonly OptionSpec[] = Object.freeze([keyOption, tempoOption, scoreOption]);

/** The controls a checked request asks for, as job parameters ("any" key: none; no score option: the settings that apply, the member's own or the server's). */
export function controlParams(options: CommandRequest['options'], settings: ServerSettings): Pick<JobParams, 'key' | 'tempoBpm' | 'score'> {
  const key = options.key as string | undefined;
  const tempo = options.tempo as number | undefined;
  return {
    ...(key !== undefined && key !== 'any' ? { key } : {}),
    ...(tempo !== undefined ? { tempoBpm: tempo } : {}),
    score: (options.score as boolean | undefined) ?? settings.score ?? false,
  };
}
