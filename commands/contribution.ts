/** `contribution reject <id> [reason]` / `contribution restore <id> [reason]` (moderators). */
import { isContributionId } from '../src/community/contributions.ts';
import type { CommandSpec } from './shared/command.ts';
import { COMMUNITY_OFF, isUserFacingError, requesterName } from './shared/community.ts';

export const contribution: CommandSpec = {
  name: 'contribution',
  description: 'Reject or restore one contributed file (moderators)',
  permission: 'moderator',
  community: true,
  options: [
    {
      name: 'action',
      kind: 'string',
      description: 'reject: no longer used for training; restore: used again (also for flagged files)',
      required: true,
      choices: [
        { name: 'reject', value: 'reject' },
        { name: 'restore', value: 'restore' },
      ],
    },
    { name: 'id', kind: 'string', description: 'the contribution id, from /contributions (c…)', required: true, max: 32, accepts: (w) => isContributionId(w.toLowerCase()) },
    { name: 'reason', kind: 'string', description: 'why, for the record', max: 200, rest: true },
  ],
  details: ['Rejected files are kept, so they can be restored. Restoring a flagged file accepts it despite its low similarity. Either takes effect at the next retraining.'],
  async execute(request, reply) {
    const service = request.bot.community;
    if (!service) return reply.error(COMMUNITY_OFF);
    const action = request.options.action as 'reject' | 'restore';
    const id = String(request.options.id).trim().toLowerCase();
    const reason = request.options.reason as string | undefined;
    const by = requesterName(request.who);
    let record;
    try {
      record = action === 'reject' ? await service.community.rejectContribution(id, by, reason) : await service.community.restoreContribution(id, by, reason);
    } catch (e) {
      if (isUserFacingError(e)) return reply.error(`${e.message}: see /contributions`);
      throw e;
    }
    await reply.info({
      title: `Contribution ${record.id} ${action === 'reject' ? 'rejected' : 'restored'}`,
      lines: [
        `${record.filename}${record.label ? ` (${record.label})` : ''}, ${record.notes} notes, similarity ${record.similarity.toFixed(2)}, from ${record.uploader}`,
        record.status === 'accepted' ? 'It is used from the next retraining on.' : 'It is not used from the next retraining on; its file is kept, so /contribution restore brings it back.',
        ...(reason ? [`reason: ${reason}`] : []),
      ],
    });
  },
};
