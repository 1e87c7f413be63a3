/** `status`: queue length, model version and metrics, uptime. */
import type { CommandSpec } from './shared/command.ts';

export function formatUptime(ms: number): string {
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

export const status: CommandSpec = {
  name: 'status',
  description: 'Queue length, model version and uptime',
  options: [],
  async execute(request, reply) {
    const { bot } = request;
    const q = bot.queueStats();
    const metrics = Object.entries(bot.model.metrics)
      .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(3)}`)
      .join(', ');
    await reply.info({
      title: 'nocturne status',
      lines: [
        `Queue: ${q.waiting} waiting (of ${q.maxWaiting}), ${q.composing} composing now; a batch takes about ${q.batchSeconds.toFixed(1)} s`,
        `Since start: ${q.finishedSinceStart} piece${q.finishedSinceStart === 1 ? '' : 's'} finished, ${q.failedSinceStart} failed${q.meanBatchSize ? `, ${q.meanBatchSize.toFixed(1)} per batch on average` : ''}`,
        `Model: ${bot.model.version}, ${bot.model.composers.length} composers${bot.model.trainedAt ? `, trained ${bot.model.trainedAt.slice(0, 10)}` : ''}`,
        ...(metrics ? [`Metrics: ${metrics}`] : []),
        `Uptime: ${formatUptime(Date.now() - bot.startedAt.getTime())}`,
      ],
    });
  },
};
