/**
 * `show <job-id>`: recalls a past piece (parameters, model version, random seed) and re-posts its
 * files. Only in the server, workspace or DM the piece was made in: elsewhere the id is answered
 * as unknown (src/jobs/tenant.ts).
 */
import type { CommandSpec } from './shared/command.ts';
import { failureLine, jobFields, requestText } from './shared/results.ts';
import { reachableJob } from '../src/jobs/tenant.ts';

export const show: CommandSpec = {
  name: 'show',
  description: 'Show a past piece again, with its settings and files',
  options: [{ name: 'job', kind: 'string', description: 'the job id printed under the piece', required: true, max: 32 }],
  async execute(request, reply) {
    const id = String(request.options.job).trim().toLowerCase();
    const record = await reachableJob(request.bot.store, id, request.who);
    if (!record) return reply.error(`no piece with job id ${JSON.stringify(String(request.options.job))}: the id is under each piece the bot posts`);
    if (record.state === 'done') return request.bot.postResult(record, reply);
    const lines = jobFields(record).map(([k, v]) => `${k}: ${v}`);
    if (record.state === 'failed') lines.unshift(failureLine(record));
    else lines.unshift(`still ${record.state}`);
    await reply.info({ title: `Job ${record.id}: ${requestText(record)}`, lines });
  },
};
