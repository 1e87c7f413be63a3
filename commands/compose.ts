/** `compose <composer> [notes=250] [temperature] [seed] [key] [tempo] [score]`: a new piece in a composer's style. */
import { NOTES_MAX, NOTES_MIN } from '../src/engine/engine.ts';
import { RANDOM_SEED_MAX, TEMPERATURE_MAX } from '../src/engine/types.ts';
import { ANY_COMPOSER, matchComposer, suggestComposers, unknownComposerMessage } from '../src/engine/composers.ts';
import type { BotContext, CommandSpec, OptionChoice, OptionSpec } from './shared/command.ts';
import { CONTROL_OPTIONS, controlParams } from './controls.ts';

export const DEFAULT_NOTES = 250;

/** Composer names from the loaded model, best matches first, for autocomplete. */
export function composerChoices(typed: string, bot: BotContext): OptionChoice[] {
  const names = [...bot.composerNames, ANY_COMPOSER];
  const t = typed.trim();
  const picked = t === '' ? names : suggestComposers(t, names, 25);
  return picked.map((n) => ({ name: n, value: n }));
}

export function composerOption(required: boolean): OptionSpec {
  return { name: 'composer', kind: 'string', description: 'a composer the model knows (see /styles), or "any"', required, max: 60, autocomplete: composerChoices, accepts: (w) => !/^[\d.+-]/.test(w) };
}

export function notesOption(description: string): OptionSpec {
  return {
    name: 'notes',
    kind: 'integer',
    description,
    min: NOTES_MIN,
    max: NOTES_MAX,
    suggestions: [
      { name: '250 (about a minute)', value: 250 },
      { name: '500', value: 500 },
    ],
    defaultText: String(DEFAULT_NOTES),
  };
}

/** The engine's spelling of a composer, or the one-line "unknown composer … did you mean" message. */
export function resolveComposer(typed: string, bot: BotContext): { composer?: string; problem?: string } {
  const composer = matchComposer(typed, bot.composerNames);
  return composer ? { composer } : { problem: unknownComposerMessage(typed, bot.composerNames) };
}

export const compose: CommandSpec = {
  name: 'compose',
  description: 'Compose a piano piece in the style of a composer',
  options: [
    composerOption(true),
    notesOption(`how many notes to write, ${NOTES_MIN}–${NOTES_MAX} (a chord of three counts as three)`),
    { name: 'temperature', kind: 'number', description: 'randomness: 1.0 is the model\'s own, lower is safer, 0 is greedy', min: 0, max: TEMPERATURE_MAX, defaultText: '1.0' },
    { name: 'seed', kind: 'integer', description: 'random seed: the same seed and settings give the same piece', min: 0, max: RANDOM_SEED_MAX },
    ...CONTROL_OPTIONS,
  ],
  details: [
    'Posts the audio, the MIDI file and a piano-roll picture, with buttons to continue the piece or vary it.',
    'key: the model writes in that key (enharmonic spellings are the same key: Db major is C# major); tempo: the MIDI and the audio follow it; score: the MusicXML and a picture of its first page come too.',
  ],
  async execute(request, reply) {
    const { options, bot } = request;
    const { composer, problem } = resolveComposer(String(options.composer), bot);
    if (!composer) return reply.error(problem!);
    const settings = await bot.settingsFor(request.who);
    await bot.runJob(
      {
        kind: 'compose',
        who: request.who,
        address: request.address,
        uploadLimitBytes: reply.uploadLimitBytes,
        params: {
          composer,
          notes: (options.notes as number | undefined) ?? DEFAULT_NOTES,
          temperature: options.temperature as number | undefined,
          randomSeed: options.seed as number | undefined,
          format: settings.audio,
          ...controlParams(options, settings),
        },
      },
      reply,
    );
  },
};
