/** `settings [audio=wav|mp3|opus|ogg] [score=yes|no]`: this server's audio format and score default (managers only); without options, shows them. */
import type { CommandSpec } from './shared/command.ts';
import type { AudioFormat } from '../src/engine/types.ts';
import { scoreOption } from './controls.ts';

export const settings: CommandSpec = {
  name: 'settings',
  description: "Show or change this server's settings (audio format, score)",
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
    { ...scoreOption, description: 'yes: every piece comes with its score (MusicXML and a picture), unless asked otherwise', named: false, defaultText: 'no' },
  ],
  async execute(request, reply) {
    const { bot, who, options } = request;
    const current = await bot.settingsFor(who);
    const audio = options.audio as AudioFormat | undefined;
    const score = options.score as boolean | undefined;
    const next = { ...current, ...(audio ? { audio } : {}), ...(score !== undefined ? { score } : {}) };
    const changed = next.audio !== current.audio || Boolean(next.score) !== Boolean(current.score);
    if (changed) await bot.saveSettingsFor(who, next);
    await reply.info({
      title: audio || score !== undefined ? 'Settings saved' : 'Settings',
      lines: [
        next.audio === 'wav' ? 'audio: WAV (mono 22.05 kHz, then OGG, only when a WAV is over the upload limit)' : `audio: ${next.audio.toUpperCase()} always (a lower bitrate only when over the upload limit)`,
        next.score ? 'score: with every piece (MusicXML and a picture of its first page; score:no on a request leaves it out)' : 'score: only when a request asks for it (score:yes)',
      ],
    });
  },
};
