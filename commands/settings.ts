/** `settings [audio=wav|ogg]`: this server's audio format (managers only); without options, shows it. */
import type { CommandSpec } from '../src/chat/command.ts';

export const settings: CommandSpec = {
  name: 'settings',
  description: "Show or change this server's settings (audio format)",
  permission: 'manager',
  options: [
    {
      name: 'audio',
      kind: 'string',
      description: 'wav: WAV, smaller only when needed; ogg: always OGG (smaller files)',
      choices: [
        { name: 'WAV (shrunk only when over the upload limit)', value: 'wav' },
        { name: 'OGG always', value: 'ogg' },
      ],
    },
  ],
  async execute(request, reply) {
    const { bot, who, options } = request;
    const current = await bot.settingsFor(who);
    const audio = options.audio as 'wav' | 'ogg' | undefined;
    if (audio && audio !== current.audio) await bot.saveSettingsFor(who, { ...current, audio });
    const now = audio ?? current.audio;
    await reply.info({
      title: audio ? 'Settings saved' : 'Settings',
      lines: [now === 'ogg' ? 'audio: OGG always' : 'audio: WAV (mono 22.05 kHz, then OGG, only when a WAV is over the upload limit)'],
    });
  },
};
