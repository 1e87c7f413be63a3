/** `drift` (moderators): the similarity of contributions and generated pieces to the training corpus, as numbers and a chart. */
import type { CommandSpec } from './shared/command.ts';
import { COMMUNITY_OFF } from './shared/community.ts';

export const drift: CommandSpec = {
  name: 'drift',
  description: 'How far contributions and generated pieces drift from the training music (moderators)',
  permission: 'moderator',
  community: true,
  options: [],
  details: ['Similarity to the training corpus from 0 to 1 (1: the same distributions of pitch, rhythm, duration, loudness and chord size), for each contribution, the accepted pool and the latest generated pieces, with a chart over time.'],
  async execute(request, reply) {
    const service = request.bot.community;
    if (!service) return reply.error(COMMUNITY_OFF);
    await reply.progress('measuring…');
    const report = await service.community.driftReport({ chart: true });
    await reply.info({
      title: 'Drift: similarity to the training corpus',
      lines: report.chartPath ? report.summary : [...report.summary, 'no chart yet: nothing has been contributed or composed'],
      ...(report.chartPath ? { files: [{ path: report.chartPath, name: 'drift.png', contentType: 'image/png' }] } : {}),
    });
  },
};
