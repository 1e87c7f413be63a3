/** `settings [audio=wav|mp3|opus|ogg]`: this server's audio format (managers only); without options, shows it. */
import type { CommandSpec } from '../src/chat/command.ts';
import type { AudioFormat } from '../src/engine/types.ts';

export const settings: CommandSpec = {
  name: 'settings',
  description: "Show or change this server's settings (audio format)",
  permission: 'manager',
  options: [
    {
      name: 'audio',
      kind: 'string',
      description: 'wav: WAV, smaller only when needed; mp3, opus, ogg: always that (smaller; MP3 plays everywhere)',
      choices: [
        { name: 'WAV (shrunk only when over the upload limit)', value: 'wav' },
        { name: 'MP3 always (plays inline on phones)', value: 'mp3' },
        { name: 'Opus always', value: 'opus' },
        { name: 'OGG always', value: 'ogg' },
      ],
    },
  ],
  async execute(request, reply) {
    const { bot, who, options } = request;
    const current = await bot.settingsFor(who);
    const audio = options.audio as AudioFormat | undefined;
    if (audio && audio !== current.audio) await bot.saveSettingsFor(who, { ...current, audio });
    const now = audio ?? current.audio;
    await reply.info({
      title: audio ? 'Settings saved' : 'Settings',
      lines: [now === 'wav' ? 'audio: WAV (mono 22.05 kHz, then OGG, only when a WAV is over the upload limit)' : `audio: ${now.toUpperCase()} always (a lower bitrate only when over the upload limit)`],
    });
  },
};
