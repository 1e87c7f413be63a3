/** `help [command]`: what the bot does and how to call each command, in this platform's syntax. */
import type { CommandSpec } from './shared/command.ts';

export const help: CommandSpec = {
  name: 'help',
  description: 'How to use nocturne',
  options: [{ name: 'command', kind: 'string', description: 'a command to explain in detail', max: 32 }],
  async execute(request, reply) {
    const { bot } = request;
    const wanted = request.options.command as string | undefined;
    if (wanted) {
      const spec = bot.commands.find((c) => c.name === wanted.replace(/^\//, '').toLowerCase());
      if (!spec) return reply.error(`no command ${JSON.stringify(wanted)}: the commands are ${bot.commands.map((c) => c.name).join(', ')}`);
      return reply.info({ title: `/${spec.name}: ${spec.description}`, lines: [request.usage(spec), ...(spec.details ?? [])] });
    }
    await reply.info({
      title: 'nocturne composes classical piano music',
      lines: [
        ...bot.commands.map((c) => {
          const line = request.usage(c).split('\n')[0];
          return line.includes(c.description) ? line : `${line} — ${c.description}`;
        }),
        'Under each piece: Continue +250 (extends it), Variation (new random seed), Regenerate (same seed, current model).',
      ],
    });
  },
};
