/**
 * `settings [audio=wav|mp3|opus|ogg|default] [score=yes|no] [for=server|me] [clear]`: the audio
 * format and score default of this server (managers only) or a member's own (`for:me`, anyone),
 * which win over the server's for that member's requests (compose, continue, the buttons).
 * Without options, shows which apply to the member asking, and where each comes from.
 */
import type { CommandSpec, OptionSpec } from './shared/command.ts';
import type { AudioFormat } from '../src/engine/types.ts';
import { DEFAULT_SERVER_SETTINGS, type MemberSettings, type ServerSettings } from '../src/jobs/store.ts';
import { scoreOption } from './controls.ts';

/** `audio:default`: for a member, back to the server's format; for the server, back to WAV. */
const DEFAULT_CHOICE = 'default';

/** Whose settings a change is for: the server's (managers) or the member's own. */
const forOption: OptionSpec = {
  name: 'for',
  kind: 'string',
  description: "server: this server's default (managers); me: your own, over the server's for your pieces",
  choices: [{ name: 'this server (managers)', value: 'server' }, { name: 'me (my own choice)', value: 'me' }],
  defaultText: 'server',
  named: true,
};

const audioLine = (audio: AudioFormat) =>
  audio === 'wav' ? 'WAV (mono 22.05 kHz, then OGG, only when a WAV is over the upload limit)' : `${audio.toUpperCase()} always (a lower bitrate only when over the upload limit)`;
const scoreLine = (score: boolean | undefined) => (score ? 'with every piece (MusicXML and a picture of its first page; score:no on a request leaves it out)' : 'only when a request asks for it (score:yes)');

/** One setting as it applies to the member: the value, and whose it is. */
function applies<T>(name: string, own: T | undefined, server: T, describe: (v: T) => string, short: (v: T) => string): string {
  return own === undefined ? `${name}: ${describe(server)}, this server's` : `${name}: ${describe(own)}, your own (this server's: ${short(server)})`;
}

export const settings: CommandSpec = {
  name: 'settings',
  description: "Show or change the audio format and score: this server's (managers) or your own (for:me)",
  usesManager: true,
  options: [
    {
      name: 'audio',
      kind: 'string',
      description: "wav: WAV, smaller only when needed; mp3, opus, ogg: always that; default: for:me, the server's",
      choices: [
        { name: 'WAV (shrunk only when over the upload limit)', value: 'wav' },
        { name: 'MP3 always (plays inline on phones)', value: 'mp3' },
        { name: 'Opus always', value: 'opus' },
        { name: 'OGG always', value: 'ogg' },
        { name: "default (for:me: the server's; for the server: WAV)", value: DEFAULT_CHOICE },
      ],
    },
    { ...scoreOption, description: 'yes: every piece comes with its score (MusicXML and a picture), unless asked otherwise', named: false, defaultText: 'no' },
    forOption,
    { name: 'clear', kind: 'boolean', description: "forget the choices first (for:me: the server's apply to you; server: WAV, no score)", named: true },
  ],
  details: [
    "for:me sets your own choice, in every server: it wins over the server's for your /compose, /continue and the buttons. audio:default or clear goes back to the server's.",
    "Without for:me the server's settings change, which only people who can manage the server may do.",
  ],
  async execute(request, reply) {
    const { bot, who, options } = request;
    const audio = options.audio as AudioFormat | typeof DEFAULT_CHOICE | undefined;
    const score = options.score as boolean | undefined;
    const clear = options.clear === true;
    const mine = options.for === 'me';
    const changing = audio !== undefined || score !== undefined || clear;
    if (changing && !mine && !who.isManager) {
      return reply.error("only people who can manage the server change its settings: add for:me to choose your own (e.g. /settings audio:mp3 for:me)");
    }
    if (changing) {
      const set = <T extends MemberSettings>(current: T, reset: T): T => ({
        ...(clear ? reset : current),
        ...(audio === DEFAULT_CHOICE ? { audio: reset.audio } : audio ? { audio } : {}),
        ...(score !== undefined ? { score } : {}),
      });
      if (mine) await bot.saveMemberSettingsFor(who, set<MemberSettings>(await bot.memberSettingsFor(who), {}));
      else await bot.saveSettingsFor(who, set<ServerSettings>(await bot.serverSettingsFor(who), { ...DEFAULT_SERVER_SETTINGS }));
    }
    const [server, own] = await Promise.all([bot.serverSettingsFor(who), bot.memberSettingsFor(who)]);
    await reply.info({
      title: !changing ? 'Settings' : mine ? 'Your settings saved' : "This server's settings saved",
      lines: [
        applies('audio', own.audio, server.audio, audioLine, (a) => a.toUpperCase()),
        applies('score', own.score, Boolean(server.score), scoreLine, (s) => (s ? 'with every piece' : 'when asked')),
        own.audio === undefined && own.score === undefined ? 'yours: add for:me to choose your own (e.g. audio:mp3 for:me)' : 'yours: clear for:me (or audio:default for:me) goes back to the server\'s',
      ],
    });
  },
};
