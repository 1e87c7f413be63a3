/**
 * `contribute` with one or more MIDI attachments and an optional composer or style label: gives
 * the files to the community loop for the next retraining. Each file gets its own verdict line:
 * accepted, flagged for a moderator (with its similarity to the training corpus), or refused with
 * the reason (the `nocturne check` verdict, a duplicate, the daily limit, a bad label).
 *
 * Every file offered counts against the member's hourly allowance (NOCTURNE_CONTRIBUTION_ATTEMPTS_PER_HOUR),
 * refused ones included; files beyond it are answered "slow down" without being downloaded. The
 * terminal (the operator at their own machine) is exempt, as from the job queue's rate limits.
 */
import { displayName, type ContributionOutcome } from '../src/community/contributions.ts';
import { MIDI_LIMITS } from '../src/midi/read.ts';
import type { CommandSpec, OptionSpec } from './shared/command.ts';
import { COMMUNITY_OFF } from './shared/community.ts';
import { formatBytes, isAttachment } from './shared/command.ts';
import { composerChoices } from './compose.ts';

/** Files one `contribute` takes (Discord needs an option per file; a Slack message carries up to 10). */
export const MAX_CONTRIBUTION_FILES = 5;

const isMidiName = (w: string) => /\.midi?$/i.test(w);

/** midi, midi2 … midi5: the first is required. No size limit here, so one big file does not refuse the others. */
export const CONTRIBUTION_FILE_OPTIONS: OptionSpec[] = Array.from({ length: MAX_CONTRIBUTION_FILES }, (_, i) => ({
  name: i === 0 ? 'midi' : `midi${i + 1}`,
  kind: 'attachment' as const,
  description: i === 0 ? 'a solo-piano MIDI file to give to the model' : 'another solo-piano MIDI file',
  required: i === 0,
  accepts: isMidiName,
}));

/** The answer once a member's allowance of files is used up. */
export function slowDownLine(limit: number, retryAfterSeconds: number): string {
  const wait = retryAfterSeconds >= 90 ? `${Math.ceil(retryAfterSeconds / 60)} min` : `${retryAfterSeconds} s`;
  return `slow down: you offered ${limit} file${limit === 1 ? '' : 's'} to contribute in the last hour (the limit, refused files included); try again in ~${wait}`;
}

/** One line per file: "name: accepted as c… (Chopin), 286 notes, similarity 0.58". */
export function contributionLine(o: ContributionOutcome, name: string, threshold: number): string {
  if (o.status === 'refused') {
    const prefix = `${displayName(name)}: `;
    const rest = o.message.startsWith(prefix) ? o.message.slice(prefix.length) : o.message;
    const why = o.reason === 'unreadable' || o.reason === 'unacceptable' ? `${o.reason}: ${rest}` : rest;
    return `${displayName(name)}: refused, ${why}`;
  }
  const r = o.record;
  if (o.status === 'flagged') {
    return `${r.filename}: flagged for a moderator, similarity to the training corpus ${r.similarity.toFixed(2)} is below ${threshold}; kept as ${r.id} and used once a moderator restores it`;
  }
  return `${r.filename}: accepted as ${r.id}${r.label ? ` (${r.label})` : ''}, ${r.notes} notes, similarity to the training corpus ${r.similarity.toFixed(2)}${r.holdout ? '; held back to validate retrained models' : ''}`;
}

export const contribute: CommandSpec = {
  name: 'contribute',
  description: 'Give your own solo-piano MIDI files to the model for its next retraining',
  community: true,
  options: [
    CONTRIBUTION_FILE_OPTIONS[0],
    { name: 'label', kind: 'string', description: 'the composer or style of these pieces, e.g. Chopin', max: 40, autocomplete: composerChoices, accepts: (w) => !isMidiName(w) && !w.includes('/') },
    ...CONTRIBUTION_FILE_OPTIONS.slice(1),
  ],
  details: [
    `Up to ${MAX_CONTRIBUTION_FILES} files at a time, each a solo-piano MIDI file of at most ${formatBytes(MIDI_LIMITS.maxBytes)}. Each is checked like /continue's files; copies of training pieces or of earlier contributions (also re-saved or transposed) are refused.`,
    'Files far from the training music are flagged for a moderator instead of being used at once. Accepted ones are used at the next retraining.',
    'Every file you offer counts against an hourly allowance (20 unless the operator changed it), refused ones too; beyond it the answer is "slow down".',
  ],
  async execute(request, reply) {
    const { bot, who, options } = request;
    const service = bot.community;
    if (!service) return reply.error(COMMUNITY_OFF);
    const files = CONTRIBUTION_FILE_OPTIONS.map((o) => options[o.name]).filter(isAttachment);
    if (files.length === 0) return reply.error('attach at least one solo-piano MIDI file (the midi option)');
    const label = options.label as string | undefined;
    // Taken before anything is fetched, so that a refusal costs the member an attempt too.
    const allowance =
      who.platform === 'terminal' ? { granted: files.length, limit: files.length, retryAfterSeconds: 0 } : service.community.contributions.takeAttempts({ uploader: who.userId, platform: who.platform }, files.length);
    if (allowance.granted === 0) return reply.error(slowDownLine(allowance.limit, allowance.retryAfterSeconds));
    await reply.progress(`checking ${files.length === 1 ? files[0].name : `${files.length} files`}…`);
    const lines: string[] = [];
    const counts = { accepted: 0, flagged: 0, refused: 0 };
    for (const [i, file] of files.entries()) {
      if (i >= allowance.granted) {
        lines.push(`${displayName(file.name)}: not checked, ${slowDownLine(allowance.limit, allowance.retryAfterSeconds)}`);
        counts.refused++;
        continue;
      }
      if (file.bytes > MIDI_LIMITS.maxBytes) {
        lines.push(`${displayName(file.name)}: refused, it is ${formatBytes(file.bytes)}, over the ${formatBytes(MIDI_LIMITS.maxBytes)} limit`);
        counts.refused++;
        continue;
      }
      let bytes: Uint8Array;
      try {
        bytes = await file.download();
      } catch (e) {
        lines.push(`${displayName(file.name)}: could not be downloaded (${(e as Error).message}); attach it again`);
        counts.refused++;
        continue;
      }
      const outcome = await service.community.contribute(bytes, { uploader: who.userId, platform: who.platform, server: who.serverId, label, filename: file.name });
      lines.push(contributionLine(outcome, file.name, service.community.config.driftThreshold));
      counts[outcome.status]++;
    }
    if (counts.accepted + counts.flagged === 0) return reply.error(lines.join('; '));
    const summary = (Object.keys(counts) as (keyof typeof counts)[]).filter((k) => counts[k]).map((k) => `${counts[k]} ${k}`);
    await reply.info({
      title: `Contribution${files.length === 1 ? '' : 's'}: ${summary.join(', ')}`,
      lines: [...lines, counts.accepted ? 'Thank you! Accepted pieces are used at the next retraining.' : 'A moderator will look at the flagged pieces.'],
    });
  },
};
