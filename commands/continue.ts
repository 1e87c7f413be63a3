/**
 * `continue` with an attached seed MIDI (or a job id) and an optional composer: continues that
 * piece; with include_seed the post holds the seed's notes and then the new ones. The upload is
 * refused, with the reason from `nocturne check`, if it is not a solo-piano MIDI file within the
 * limits. A job id reaches only a job made in the same server, workspace or DM.
 */
import { ANY_COMPOSER } from '../src/engine/composers.ts';
import { checkMidiBytes } from '../src/midi/check.ts';
import { MIDI_LIMITS } from '../src/midi/read.ts';
import { looksLikeJobId } from '../src/jobs/store.ts';
import { continuationOf } from '../src/jobs/continuation.ts';
import { reachableJob } from '../src/jobs/tenant.ts';
import { isAttachment } from './shared/command.ts';
import type { CommandSpec } from './shared/command.ts';
import { DEFAULT_NOTES, composerOption, notesOption, resolveComposer } from './compose.ts';
import { CONTROL_OPTIONS, controlParams } from './controls.ts';

export const continueCommand: CommandSpec = {
  name: 'continue',
  description: 'Continue a piano piece: attach a MIDI file, or give a job id',
  options: [
    { name: 'midi', kind: 'attachment', description: 'the solo-piano MIDI file to continue', max: MIDI_LIMITS.maxBytes, accepts: (w) => /\.midi?$/i.test(w) },
    { name: 'job', kind: 'string', description: 'or the id of a piece the bot made', max: 32, accepts: looksLikeJobId },
    composerOption(false),
    notesOption('how many notes to add'),
    ...CONTROL_OPTIONS,
    { name: 'include_seed', kind: 'boolean', description: "yes: the seed's own notes open the piece posted (default: only the new notes)", named: true },
  ],
  details: [
    'The file must be a solo piano MIDI (no drums or other instruments), at most 2 MiB.',
    "include_seed: the MIDI, the audio, the piano roll and the score hold the seed's notes (as the model read them: on its grid, in its loudness steps) and then the new ones, so the whole piece can be posted.",
  ],
  async execute(request, reply) {
    const { options, bot } = request;
    const midi = options.midi;
    const jobId = options.job as string | undefined;
    if (!isAttachment(midi) && !jobId) return reply.error('attach a solo-piano MIDI file (the midi option) or give the id of a piece (job) to continue');
    if (isAttachment(midi) && jobId) return reply.error('give either a MIDI file or a job id, not both');

    let seedMidi: Uint8Array;
    let seedName: string;
    let parentComposer: string | undefined;
    let parentId: string | undefined;
    if (isAttachment(midi)) {
      await reply.progress(`checking ${midi.name}…`);
      try {
        seedMidi = await midi.download();
      } catch (e) {
        return reply.error(`could not download ${midi.name} (${(e as Error).message}): attach it again`);
      }
      const verdict = checkMidiBytes(seedMidi, midi.name);
      if (verdict.status !== 'ok') return reply.error(`${midi.name} is ${verdict.status}: ${verdict.reason ?? 'not a solo-piano MIDI file'}. Attach a solo-piano MIDI file`);
      seedName = midi.name;
    } else {
      const id = jobId!.trim().toLowerCase();
      // Another tenant's job is answered exactly as an unknown id (src/jobs/tenant.ts).
      const parent = await reachableJob(bot.store, id, request.who);
      if (!parent) return reply.error(`no piece with job id ${JSON.stringify(jobId)}: the id is under each piece the bot posts`);
      try {
        ({ seedMidi, seedName, composer: parentComposer } = await continuationOf(parent));
      } catch (e) {
        return reply.error((e as Error).message);
      }
      parentId = parent.id;
    }
    let composer = parentComposer ?? ANY_COMPOSER;
    if (options.composer !== undefined) {
      const resolved = resolveComposer(String(options.composer), bot);
      if (!resolved.composer) return reply.error(resolved.problem!);
      composer = resolved.composer;
    }
    const settings = await bot.settingsFor(request.who);
    await bot.runJob(
      {
        kind: 'continue',
        parentId,
        who: request.who,
        address: request.address,
        uploadLimitBytes: reply.uploadLimitBytes,
        seedMidi,
        params: { composer, notes: (options.notes as number | undefined) ?? DEFAULT_NOTES, format: settings.audio, seedName, ...controlParams(options, settings), ...(options.include_seed === true ? { includeSeed: true } : {}) },
      },
      reply,
    );
  },
};
