/** `models`: the model versions with their gate verdict and metrics, and which one serves. */
import type { ModelVersionInfo } from '../src/community/registry.ts';
import type { CommandSpec } from './shared/command.ts';
import { COMMUNITY_OFF, formatMetrics } from './shared/community.ts';

const SHOWN = 15;

export function modelLine(v: ModelVersionInfo): string {
  const r = v.record;
  const verdict =
    r.verdict === 'initial'
      ? 'the shipped model'
      : `${r.verdict === 'passed' ? 'passed the gate' : 'not promoted'}${r.before && r.after ? ` (validation NLL ${r.before.nll.toFixed(4)} → ${r.after.nll.toFixed(4)})` : ''}`;
  const made = r.createdAt ? ` · ${r.createdAt.slice(0, 16).replace('T', ' ')}` : '';
  const by = r.trigger ? ` · ${r.trigger}${r.requestedBy ? ` by ${r.requestedBy}` : ''}${r.contributions ? `, ${r.contributions.length} contributions` : ''}` : '';
  const metrics = formatMetrics(v.metrics, 3);
  return `${v.serving ? '▶' : '·'} ${v.version}${v.serving ? ' (serving)' : ''} · ${verdict}${metrics ? ` · ${metrics}` : ''} · ${v.composers.length} composers${by}${made}`;
}

export const models: CommandSpec = {
  name: 'models',
  description: 'List the model versions, their metrics, and which one is serving',
  community: true,
  options: [],
  details: ['Every retraining keeps its candidate as a version, promoted or not, with its metrics and training curve. Moderators switch with /rollback [version].'],
  async execute(request, reply) {
    const service = request.bot.community;
    if (!service) return reply.error(COMMUNITY_OFF);
    const versions = await service.community.listModels();
    const serving = versions.find((v) => v.serving);
    const lines = versions.slice(0, SHOWN).map(modelLine);
    if (versions.length > SHOWN) lines.push(`… and ${versions.length - SHOWN} older versions`);
    if (serving && serving.version !== request.bot.model.version) lines.push(`the bot is still switching to ${serving.version} (composing with ${request.bot.model.version})`);
    lines.push('/rollback [version] switches back (moderators)');
    await reply.info({ title: `Model versions: ${versions.length}, serving ${serving?.version ?? '?'}`, lines });
  },
};
