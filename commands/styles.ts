/** `styles`: the composers the loaded model knows, with how many pieces each was trained on. */
import type { CommandSpec } from './shared/command.ts';

export const styles: CommandSpec = {
  name: 'styles',
  description: 'List the composers the model knows',
  options: [],
  async execute(request, reply) {
    const { model } = request.bot;
    const composers = [...model.composers].sort((a, b) => a.name.localeCompare(b.name));
    await reply.info({
      title: `Model ${model.version}: ${composers.length} composers`,
      lines: [
        ...composers.map((c) => `${c.name}: trained on ${c.pieces} piece${c.pieces === 1 ? '' : 's'}`),
        'any: no particular composer',
      ],
    });
  },
};
