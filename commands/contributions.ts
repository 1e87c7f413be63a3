/** `contributions [status] [limit]` (moderators): the latest contributions with their status and similarity. */
import type { ContributionRecord, ContributionStatus } from '../src/community/contributions.ts';
import { PLATFORM_NAMES, type CommandSpec } from './shared/command.ts';
import { COMMUNITY_OFF } from './shared/community.ts';
import type { Platform } from '../src/jobs/types.ts';

export const DEFAULT_LIST = 20;

function when(iso: string): string {
  return iso.slice(0, 16).replace('T', ' ');
}

/** "c… · flagged · similarity 0.21 · scale.mid (Chopin) · 24 notes · by clara on Discord · 2026-…" */
export function contributionListLine(r: ContributionRecord): string {
  const platform = PLATFORM_NAMES[r.platform as Platform] ?? r.platform;
  const last = r.moderation[r.moderation.length - 1];
  const moderated = last ? ` · ${last.action === 'reject' ? 'rejected' : 'restored'} by ${last.by}${last.reason ? `: ${last.reason}` : ''}` : '';
  return `${r.id} · ${r.status}${r.holdout ? ' (held back for validation)' : ''} · similarity ${r.similarity.toFixed(2)} · ${r.filename}${r.label ? ` (${r.label})` : ''} · ${r.notes} notes · by ${r.uploader} on ${platform} · ${when(r.time)}${moderated}`;
}

export const contributions: CommandSpec = {
  name: 'contributions',
  description: 'List contributed MIDI files with their status and similarity (moderators)',
  permission: 'moderator',
  community: true,
  options: [
    {
      name: 'status',
      kind: 'string',
      description: 'only these (default: all, newest first)',
      choices: [
        { name: 'flagged (waiting for a moderator)', value: 'flagged' },
        { name: 'accepted', value: 'accepted' },
        { name: 'rejected', value: 'rejected' },
        { name: 'all', value: 'all' },
      ],
    },
    { name: 'limit', kind: 'integer', description: 'how many to list', min: 1, max: 50, defaultText: String(DEFAULT_LIST) },
  ],
  details: ['Similarity is to the training corpus, from 0 to 1; files below the drift threshold are flagged. /contribution reject <id> [reason] or /contribution restore <id> changes one.'],
  async execute(request, reply) {
    const service = request.bot.community;
    if (!service) return reply.error(COMMUNITY_OFF);
    const status = request.options.status as ContributionStatus | 'all' | undefined;
    const limit = (request.options.limit as number | undefined) ?? DEFAULT_LIST;
    const all = await service.community.listContributions();
    const count = (s: ContributionStatus) => all.filter((r) => r.status === s).length;
    const matching = status && status !== 'all' ? all.filter((r) => r.status === status) : all;
    const shown = matching.slice(0, limit);
    const lines = shown.map(contributionListLine);
    if (shown.length === 0) lines.push(all.length === 0 ? 'no contributions yet: members add theirs with /contribute' : `none is ${status}`);
    else if (matching.length > shown.length) lines.push(`… and ${matching.length - shown.length} more (limit:${Math.min(50, matching.length)})`);
    lines.push('/contribution reject <id> [reason] · /contribution restore <id> [reason]');
    await reply.info({
      title: `Contributions: ${all.length} (${count('accepted')} accepted, ${count('flagged')} flagged, ${count('rejected')} rejected)`,
      lines,
    });
  },
};
