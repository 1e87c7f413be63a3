/** `nocturne compose <composer> <notes> [...]` and `nocturne styles`. */
import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Engine, ComposeInputError, DEFAULT_TEMPERATURE, DEFAULT_TOP_P, NOTES_MAX, NOTES_MIN } from '../engine/engine.ts';
import { AUDIO_FORMATS, RANDOM_SEED_MAX, TEMPERATURE_MAX, TEMPO_MAX_BPM, TEMPO_MIN_BPM, type AudioFormat } from '../engine/types.ts';
import { ANY_KEY, KEY_EXPECTED, parseKey } from '../tokens/key.ts';
import { MIDI_LIMITS } from '../midi/read.ts';
import { UsageError, intOption, numberOption, optionProblems, parseBackend } from './options.ts';

export const DEFAULT_MODEL_DIR = resolve(import.meta.dirname, '../../models/default');

export const COMPOSE_USAGE = `usage: nocturne compose <composer> <notes> [options]
  <composer>            a composer the model knows (see \`nocturne styles\`), or "any"
  <notes>               how many notes to write, ${NOTES_MIN}..${NOTES_MAX} (250 or 500 are typical)
  --seed FILE.mid       continue this piano MIDI file
  --include-seed        with --seed: the seed's own notes open the piece written (MIDI, audio,
                        piano roll, score); default only the new notes
  --temperature T       0..5 (lower is safer, 0 is greedy); default: the model's own decoding
                        (model.json "decoding"), else ${DEFAULT_TEMPERATURE}
  --top-p P             nucleus mass in (0, 1]; default: the model's, else ${DEFAULT_TOP_P}
  --random-seed S       same seed and parameters give the same notes (default: random)
  --key K               the key: one of the 24 major and minor keys, e.g. "D minor", "C# minor",
                        "Db major", "f#m", "Bb"; default any
  --tempo BPM           ${TEMPO_MIN_BPM}..${TEMPO_MAX_BPM}; the MIDI and the audio follow it (default: the composer's,
                        or the seed's)
  --score               also write the score: piece.musicxml (MusicXML 4.0) and piece-score.png
  --format F            audio format: wav (default), ogg, mp3 or opus; all about -16 LUFS
  --out DIR             where piece.mid, piece.<format>, piece.png (and the score) go (default ./out)
  --model DIR           model folder (default models/default)
  --backend B           auto | tensorflow | wasm | cpu
  --json                print one JSON object instead of text`;

export async function runCompose(argv: string[], log: (line: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      seed: { type: 'string' },
      'include-seed': { type: 'boolean' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      'random-seed': { type: 'string' },
      format: { type: 'string' },
      key: { type: 'string' },
      tempo: { type: 'string' },
      score: { type: 'boolean' },
      out: { type: 'string' },
      model: { type: 'string' },
      backend: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const { problems, take: takeOr } = optionProblems();
  const take = <T>(parse: () => T): T | undefined => takeOr<T | undefined>(parse, undefined);
  if (positionals.length < 2) problems.push('give a composer and a number of notes, e.g. `nocturne compose chopin 500`');
  if (positionals.length > 2) problems.push(`unexpected arguments: ${positionals.slice(2).join(' ')}`);
  const [composer, notesRaw] = positionals;
  const notes = notesRaw === undefined ? undefined : take(() => intOption('<notes>', notesRaw, 0, NOTES_MIN, NOTES_MAX));
  // Unset knobs stay unset: the engine then uses the model's own decoding (model.json).
  const temperature = values.temperature === undefined ? undefined : take(() => numberOption('--temperature', values.temperature, DEFAULT_TEMPERATURE, 0, TEMPERATURE_MAX));
  const topP = values['top-p'] === undefined ? undefined : take(() => numberOption('--top-p', values['top-p'], DEFAULT_TOP_P, 1e-6, 1));
  const randomSeed = values['random-seed'] === undefined ? undefined : take(() => intOption('--random-seed', values['random-seed'], 0, 0, RANDOM_SEED_MAX));
  const format = values.format ?? 'wav';
  if (!(AUDIO_FORMATS as readonly string[]).includes(format)) problems.push(`--format must be ${AUDIO_FORMATS.join(', ')}, got ${JSON.stringify(format)}`);
  let key: number | undefined;
  if (values.key !== undefined) {
    const parsed = parseKey(values.key);
    if (parsed === undefined) problems.push(`--key must be ${KEY_EXPECTED}; got ${JSON.stringify(values.key)}`);
    else if (parsed !== ANY_KEY) key = parsed;
  }
  const tempoBpm = values.tempo === undefined ? undefined : take(() => numberOption('--tempo', values.tempo, 0, TEMPO_MIN_BPM, TEMPO_MAX_BPM));
  const backend = take(() => parseBackend(values.backend));
  let seedMidi: Uint8Array | undefined;
  if (values.seed) {
    try {
      const st = await stat(values.seed);
      if (!st.isFile()) problems.push(`--seed ${values.seed}: not a file`);
      else if (st.size > MIDI_LIMITS.maxBytes) problems.push(`--seed ${values.seed}: ${st.size} bytes, over the limit of ${MIDI_LIMITS.maxBytes}`);
      else seedMidi = await readFile(values.seed);
    } catch {
      problems.push(`--seed ${values.seed}: no such file`);
    }
  }
  const includeSeed = values['include-seed'] === true;
  if (includeSeed && !values.seed) problems.push('--include-seed opens the piece with the seed\'s notes: give --seed FILE.mid too, or leave --include-seed out');
  if (problems.length) throw new UsageError(problems.join('\n'), COMPOSE_USAGE);

  const quiet = values.json === true;
  const engine = await Engine.open(values.model ?? DEFAULT_MODEL_DIR, backend, quiet ? () => {} : log);
  try {
    const outDir = resolve(values.out ?? 'out');
    const result = await engine
      .compose(
        { composer: composer!, notes: notes!, temperature, topP, randomSeed, seedMidi, outDir, key, tempoBpm, score: values.score === true, includeSeed, audio: { format: format as AudioFormat } },
        (stage) => !quiet && stage !== 'done' && log(`${stage}…`),
      )
      .catch((e) => {
        if (e instanceof ComposeInputError) throw new UsageError(e.message, COMPOSE_USAGE);
        throw e;
      });
    if (quiet) {
      process.stdout.write(
        `${JSON.stringify({
          midi: result.midiPath,
          audio: result.audioPath,
          pianoRoll: result.pngPath,
          ...(result.scorePath ? { score: result.scorePath, scorePicture: result.scorePicturePath } : {}),
          modelVersion: result.modelVersion,
          composer: result.composer,
          notes: result.noteCount,
          seconds: Number(result.seconds.toFixed(3)),
          musicSeconds: Number(result.musicSeconds.toFixed(2)),
          params: result.params,
        })}\n`,
      );
    } else {
      const p = result.params;
      process.stdout.write(
        [
          `composed ${result.noteCount} notes (${result.musicSeconds.toFixed(1)} s of music) in the style of ${result.composer} in ${result.seconds.toFixed(2)} s`,
          `  model ${result.modelVersion}; ${p.decoding}, random seed ${p.randomSeed}${p.seeded ? `, continuing --seed${p.seedNotes ? ` (its ${p.seedNotes} notes open the piece)` : ''}` : ''}`,
          `  key ${p.key}${p.estimatedKey !== p.key ? ` (estimated ${p.estimatedKey})` : ''}, tempo ${Number(p.tempoBpm.toFixed(1))} BPM${p.keyNote ? ` (${p.keyNote})` : ''}`,
          `  ${result.midiPath}`,
          `  ${result.audioPath}`,
          `  ${result.pngPath}`,
          ...(result.scorePath ? [`  ${result.scorePath}`, `  ${result.scorePicturePath}`] : []),
          '',
        ].join('\n'),
      );
    }
    return 0;
  } finally {
    engine.dispose();
  }
}

export async function runStyles(argv: string[], log: (line: string) => void): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { model: { type: 'string' }, json: { type: 'boolean' } } });
  const engine = await Engine.open(values.model ?? DEFAULT_MODEL_DIR, 'auto', values.json ? () => {} : log);
  try {
    const info = engine.info();
    if (values.json) process.stdout.write(`${JSON.stringify(info)}\n`);
    else {
      process.stdout.write(`model ${info.version}: ${info.composers.length} composers (and "any")\n`);
      for (const c of info.composers) process.stdout.write(`  ${c.name.padEnd(14)} ${c.pieces} pieces\n`);
    }
    return 0;
  } finally {
    engine.dispose();
  }
}
