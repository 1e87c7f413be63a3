/** `rollback [version]` (moderators): serve the previous model again, or the named version. */
import type { CommandSpec } from './shared/command.ts';
import { COMMUNITY_OFF, isUserFacingError, requesterName } from './shared/community.ts';

export const rollback: CommandSpec = {
  name: 'rollback',
  description: 'Serve the previous model version again, or a named one (moderators)',
  permission: 'moderator',
  community: true,
  options: [{ name: 'version', kind: 'string', description: 'the version to serve (a unique start such as r3 is enough; default: the previous one)', max: 80 }],
  details: ['Pieces already being composed finish on the old model; every request after that uses the new one. /models lists the versions.'],
  async execute(request, reply) {
    const { bot, who } = request;
    const service = bot.community;
    if (!service) return reply.error(COMMUNITY_OFF);
    const version = request.options.version as string | undefined;
    let change;
    try {
      change = await service.rollback(version, requesterName(who));
    } catch (e) {
      if (isUserFacingError(e)) return reply.error(`${e.message}; /models lists the versions`);
      throw e;
    }
    const switched = await service.servingSwitched();
    const lines = [`was ${change.from ?? '?'}`, change.reason];
    if (!switched.ok) {
      return reply.error(`the registry now names ${change.to}, but the bot could not load it (${switched.error}); it keeps composing with ${bot.model.version}`);
    }
    lines.push(`/compose uses ${bot.model.version} from now on`);
    await reply.info({ title: `Now serving ${change.to}`, lines });
    await service.announce({ title: `Rollback: now serving ${change.to}`, lines: lines.slice(0, 2) }, { platform: who.platform, channelId: who.channelId });
  },
};
