/**
 * The Discord front end (discord.js 14, gateway). Registers the commands (globally, or in one
 * guild when DISCORD_GUILD_ID is set) from their declarations, answers autocomplete, and turns
 * slash commands and button presses into dispatch calls.
 *
 * Replies: the interaction is deferred within Discord's 3 s (at the first progress line, or after
 * 2 s whatever happens), then the reply is edited as the job moves (queued #n → composing →
 * rendering) and finally edited with the audio, MIDI and piano-roll attachments, an embed of the
 * parameters, the job id and the training data's attribution, and the three buttons. Errors are
 * ephemeral: a direct ephemeral reply if nothing was sent yet, else the deferred reply is deleted
 * and an ephemeral follow-up says what to change.
 */
import { readFile } from 'node:fs/promises';
import {
  ActionRowBuilder,
  ApplicationCommandOptionType,
  AttachmentBuilder,
  ButtonBuilder,
  ButtonStyle,
  Client,
  EmbedBuilder,
  Events,
  GatewayIntentBits,
  MessageFlags,
  PermissionFlagsBits,
  Routes,
  type APIApplicationCommandOption,
  type AutocompleteInteraction,
  type ButtonInteraction,
  type ChatInputCommandInteraction,
  type RESTPostAPIChatInputApplicationCommandsJSONBody,
} from 'discord.js';
import type { Attachment, BotContext, ChannelRef, CommandSpec, InfoMessage, OptionSpec, Reply, ResultPost } from '../../../commands/shared/command.ts';
import { autocompleteChoices, oneLine, orderedReply, runButton, runCommand } from '../../chat/dispatch.ts';
import type { RawOptions } from '../../chat/options.ts';
import { DISCORD_ATTACHMENT_HOSTS, attachmentByteLimit, downloadAttachment } from '../../chat/download.ts';
import type { JobRecord, ReplyAddress, Requester } from '../../jobs/types.ts';
import type { FrontEnd } from '../frontEnd.ts';
import { REPLY_TOKEN_USABLE_MS, replyTokenUsable } from '../../jobs/replyToken.ts';

/** What this adapter needs from the configuration (src/app/config.ts reads it from the environment). */
export interface DiscordConfig {
  token: string;
  /** Register the commands in this guild only (instant), instead of globally. */
  guildId?: string;
  apiBase: string;
  /**
   * DISCORD_UPLOAD_LIMIT_MB: the upload limit when Discord does not say. Each interaction carries
   * the limit where it was used (attachment_size_limit: 10 MiB, more in a boosted server), and
   * that one is used (discordUploadLimit).
   */
  uploadLimitBytes: number;
  /** Members with one of these roles moderate the community loop (as do those with Manage Server). */
  moderatorRoleIds?: string[];
  /** Channel for the moderators' notices (retraining outcomes, promotions, rollbacks). */
  moderatorChannelId?: string;
  /** Hosts attachments may be downloaded from (DISCORD_ATTACHMENT_HOSTS; default Discord's CDN). */
  attachmentHosts?: readonly string[];
  /** DISCORD_SHARDS: run a ShardingManager with this many shard processes ('auto': Discord's recommendation); unset: one client, no sharding. */
  shards?: number | 'auto';
}


/**
 * Discord's interaction tokens last 15 minutes; after 14, a recovered job posts a new message (and
 * job records drop the token: src/jobs/replyToken.ts).
 */
const TOKEN_LIFETIME_MS = REPLY_TOKEN_USABLE_MS;
/** Defer if the command has not answered by then (Discord's limit is 3 s). */
const AUTO_DEFER_MS = 2000;
const EMBED_COLOUR = 0x3b4a6b;

const OPTION_TYPES: Record<OptionSpec['kind'], ApplicationCommandOptionType> = {
  string: ApplicationCommandOptionType.String,
  integer: ApplicationCommandOptionType.Integer,
  number: ApplicationCommandOptionType.Number,
  boolean: ApplicationCommandOptionType.Boolean,
  attachment: ApplicationCommandOptionType.Attachment,
};

/**
 * The upload limit for an answer to an interaction: the `attachment_size_limit` Discord sends with
 * it (discord.js: `attachmentSizeLimit`; it counts the server's boosts), else the configured one.
 */
export function discordUploadLimit(interaction: { attachmentSizeLimit?: number | null }, fallbackBytes: number): number {
  const given = interaction.attachmentSizeLimit;
  return typeof given === 'number' && Number.isFinite(given) && given > 0 ? given : fallbackBytes;
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** One declared option as Discord application-command option JSON. */
export function discordOptionJson(o: OptionSpec): APIApplicationCommandOption {
  const json: Record<string, unknown> = {
    type: OPTION_TYPES[o.kind],
    name: o.name,
    description: clip(o.description, 100),
    required: o.required ?? false,
  };
  if (o.kind === 'integer' || o.kind === 'number') {
    if (o.min !== undefined) json.min_value = o.min;
    if (o.max !== undefined) json.max_value = o.max;
  }
  if (o.kind === 'string') {
    if (o.min !== undefined) json.min_length = o.min;
    if (o.max !== undefined) json.max_length = Math.min(o.max, 6000);
  }
  // Discord's choices are exclusive; suggestions ("250 or 500, or any 16–2000") need autocomplete.
  if (o.choices) json.choices = o.choices.slice(0, 25).map((c) => ({ name: clip(c.name, 100), value: c.value }));
  else if (o.autocomplete || o.suggestions) json.autocomplete = true;
  return json as unknown as APIApplicationCommandOption;
}

/**
 * One declared command as Discord slash-command JSON. Manager commands, and moderator commands
 * when no moderator role is configured, are shown only to members with Manage Server; with
 * moderator roles, moderator commands are shown to everyone (Discord cannot name the roles here)
 * and the bot refuses non-moderators itself.
 */
export function discordCommandJson(spec: CommandSpec, options: { moderatorRoles?: boolean } = {}): RESTPostAPIChatInputApplicationCommandsJSONBody {
  const sorted = [...spec.options].sort((a, b) => Number(b.required ?? false) - Number(a.required ?? false));
  const managersOnly = spec.permission === 'manager' || (spec.permission === 'moderator' && !options.moderatorRoles);
  return {
    name: spec.name,
    description: clip(spec.description, 100),
    options: sorted.map(discordOptionJson),
    ...(managersOnly ? { default_member_permissions: String(PermissionFlagsBits.ManageGuild) } : {}),
  };
}

/** Every command as Discord slash-command JSON, for this configuration's moderator roles. */
export function discordCommandsJson(commands: readonly CommandSpec[], config: Pick<DiscordConfig, 'moderatorRoleIds'>): RESTPostAPIChatInputApplicationCommandsJSONBody[] {
  const moderatorRoles = (config.moderatorRoleIds?.length ?? 0) > 0;
  return commands.map((spec) => discordCommandJson(spec, { moderatorRoles }));
}

/** "/compose composer:<…> [notes:…]" as Discord shows it. */
export function discordUsage(spec: CommandSpec): string {
  const args = spec.options.map((o) => (o.required ? `${o.name}:<${o.kind === 'attachment' ? 'file' : o.name}>` : `[${o.name}]`));
  return [`/${spec.name}`, ...args].join(' ');
}

// ---------------------------------------------------------------------------------------------
// Message payloads (pure)

interface MessageBody {
  content: string;
  embeds: ReturnType<EmbedBuilder['toJSON']>[];
  components: ReturnType<ActionRowBuilder<ButtonBuilder>['toJSON']>[];
}

/**
 * User text (a file name such as `<@&123>.mid`) shown as itself: allowed_mentions already stops
 * the ping, but Discord still renders role, user, channel and command mentions and custom emoji,
 * so a zero-width space after the `<` keeps them plain text.
 */
export function defuseMentions(text: string): string {
  return text.replace(/<(?=[@#/:]|a:|t:)/g, '<\u200b');
}

export function progressBody(text: string): MessageBody {
  return { content: `⏳ ${defuseMentions(oneLine(text, 1900))}`, embeds: [], components: [] };
}

export function infoBody(m: InfoMessage): MessageBody {
  const description = clip(m.lines.join('\n'), 4000);
  const embed = new EmbedBuilder().setTitle(clip(m.title, 256)).setDescription(description || '—').setColor(EMBED_COLOUR);
  const image = m.files?.find((f) => f.contentType.startsWith('image/'));
  if (image) embed.setImage(`attachment://${image.name}`);
  return { content: '', embeds: [embed.toJSON()], components: [] };
}

async function infoFiles(m: InfoMessage): Promise<{ name: string; data: Buffer }[]> {
  return Promise.all((m.files ?? []).map(async (f) => ({ name: f.name, data: await readFile(f.path) })));
}

export function resultBody(post: ResultPost): MessageBody {
  const embed = new EmbedBuilder()
    .setTitle(clip(post.title, 256))
    .setColor(EMBED_COLOUR)
    .addFields(post.fields.slice(0, 25).map(([name, value]) => ({ name: clip(name, 256), value: clip(value, 1024), inline: value.length < 40 })))
    .setFooter({ text: clip(post.attribution, 2048) });
  if (post.notice) embed.setDescription(clip(post.notice, 4000));
  const image = post.files.find((f) => f.kind === 'image');
  if (image) embed.setImage(`attachment://${image.name}`);
  const row = new ActionRowBuilder<ButtonBuilder>().addComponents(
    post.actions.slice(0, 5).map((a) => new ButtonBuilder().setCustomId(a.id).setLabel(a.label).setStyle(ButtonStyle.Secondary)),
  );
  return { content: '', embeds: [embed.toJSON()], components: [row.toJSON()] };
}

// ---------------------------------------------------------------------------------------------
// Replies

type Repliable = ChatInputCommandInteraction | ButtonInteraction;

/**
 * A Reply on a live interaction: defer, edit, ephemeral errors. Once the interaction's token is
 * about to expire (a long retraining run), it carries on in the channel like a recovered job.
 */
class InteractionReply implements Reply {
  private deferring: Promise<unknown> | undefined;
  private answered = false;
  private readonly timer: NodeJS.Timeout;
  private readonly createdAt = Date.now();
  private fallback: RecoveredReply | undefined;

  constructor(
    private readonly interaction: Repliable,
    readonly uploadLimitBytes: number,
    private readonly log: (line: string) => void,
  ) {
    this.timer = setTimeout(() => void this.defer().catch((e) => this.log(`discord: could not defer: ${(e as Error).message}`)), AUTO_DEFER_MS);
    this.timer.unref();
  }

  /** After the token's lifetime, a reply that posts (then edits) a message in the channel. */
  private late(): RecoveredReply | undefined {
    if (Date.now() - this.createdAt < TOKEN_LIFETIME_MS || !this.interaction.channelId) return undefined;
    const address = { applicationId: this.interaction.applicationId, token: this.interaction.token, channelId: this.interaction.channelId, createdAt: String(this.createdAt), userId: this.interaction.user.id };
    this.fallback ??= new RecoveredReply(this.interaction.client, address, this.uploadLimitBytes);
    return this.fallback;
  }

  private defer(): Promise<unknown> {
    if (this.answered) return Promise.resolve();
    this.deferring ??= this.interaction.deferReply();
    return this.deferring;
  }

  async progress(text: string): Promise<void> {
    const late = this.late();
    if (late) return late.progress(text);
    await this.defer();
    await this.interaction.editReply(progressBody(text));
  }

  async info(m: InfoMessage): Promise<void> {
    clearTimeout(this.timer);
    const late = this.late();
    if (late) return late.info(m);
    const files = (m.files ?? []).map((f) => new AttachmentBuilder(f.path, { name: f.name }));
    const body = { ...infoBody(m), ...(files.length ? { files } : {}) };
    if (!this.deferring && !this.answered) {
      this.answered = true;
      await this.interaction.reply(body);
      return;
    }
    await this.deferring;
    await this.interaction.editReply(body);
  }

  async result(post: ResultPost): Promise<void> {
    clearTimeout(this.timer);
    const late = this.late();
    if (late) return late.result(post);
    await this.defer();
    const files = post.files.map((f) => new AttachmentBuilder(f.path, { name: f.name }));
    await this.interaction.editReply({ ...resultBody(post), files });
  }

  async error(line: string): Promise<void> {
    clearTimeout(this.timer);
    const late = this.late();
    if (late) return late.error(line);
    const content = `⚠️ ${defuseMentions(oneLine(line, 1900))}`;
    if (!this.deferring && !this.answered) {
      this.answered = true;
      await this.interaction.reply({ content, flags: MessageFlags.Ephemeral });
      return;
    }
    await this.deferring;
    // The deferred reply is public; replace it with an ephemeral follow-up.
    await this.interaction.deleteReply().catch(() => undefined);
    await this.interaction.followUp({ content, flags: MessageFlags.Ephemeral });
  }
}

/**
 * A Reply for a job recovered after a restart: edits the original interaction reply while its
 * token is alive, else posts (and then edits) a message in the channel.
 */
class RecoveredReply implements Reply {
  private messageId: string | undefined;

  constructor(
    private readonly client: Client,
    private readonly address: ReplyAddress,
    readonly uploadLimitBytes: number,
  ) {}

  private get tokenAlive(): boolean {
    return Boolean(this.address.applicationId) && replyTokenUsable(this.address);
  }

  private async send(body: MessageBody, files: { name: string; data: Buffer }[] = []): Promise<void> {
    const allowed = { parse: [], users: this.address.userId ? [this.address.userId] : [] };
    const payload = { body: { ...body, allowed_mentions: allowed, attachments: files.map((f, id) => ({ id, filename: f.name })) }, files };
    if (this.tokenAlive) {
      await this.client.rest.patch(Routes.webhookMessage(this.address.applicationId, this.address.token, '@original'), { ...payload, auth: false });
      return;
    }
    if (this.messageId) {
      await this.client.rest.patch(Routes.channelMessage(this.address.channelId, this.messageId), payload);
      return;
    }
    const mention = this.address.userId ? `<@${this.address.userId}> ` : '';
    const sent = (await this.client.rest.post(Routes.channelMessages(this.address.channelId), { ...payload, body: { ...payload.body, content: `${mention}${body.content}` } })) as { id: string };
    this.messageId = sent.id;
  }

  progress(text: string): Promise<void> {
    return this.send(progressBody(text));
  }

  async info(m: InfoMessage): Promise<void> {
    await this.send(infoBody(m), await infoFiles(m));
  }

  async result(post: ResultPost): Promise<void> {
    const files = await Promise.all(post.files.map(async (f) => ({ name: f.name, data: await readFile(f.path) })));
    await this.send(resultBody(post), files);
  }

  async error(line: string): Promise<void> {
    const content = `⚠️ ${defuseMentions(oneLine(line, 1900))}`;
    if (this.tokenAlive) {
      await this.client.rest.post(Routes.webhook(this.address.applicationId, this.address.token), { body: { content, flags: MessageFlags.Ephemeral }, auth: false });
      return;
    }
    await this.send({ content, embeds: [], components: [] });
  }
}

// ---------------------------------------------------------------------------------------------
// The adapter

export interface DiscordAdapterOptions {
  /** Register the slash commands at login (default true); a shard process leaves that to its manager. */
  registerCommands?: boolean;
  /** "shard 1 of 2": named in the log and in the REST user agent of a shard process. */
  shardLabel?: string;
}

export class DiscordAdapter implements FrontEnd {
  readonly platform = 'discord' as const;
  readonly client: Client;
  private readonly log: (line: string) => void;
  private readyPromise: Promise<void> | undefined;
  private stopping = false;

  constructor(
    private readonly bot: BotContext,
    private readonly config: DiscordConfig,
    log: (line: string) => void = () => {},
    private readonly options: DiscordAdapterOptions = {},
  ) {
    this.log = (line) => log(`discord: ${line}`);
    // No pings from anything the bot writes (file names and composer names are user input),
    // except the requester's own mention on recovered jobs, allowed per message.
    // Under a ShardingManager, discord.js takes this process's shard ids from SHARDS/SHARD_COUNT.
    const rest = { api: config.apiBase, ...(options.shardLabel ? { userAgentAppendix: `Node.js ${process.version} nocturne (${options.shardLabel})` } : {}) };
    this.client = new Client({ intents: [GatewayIntentBits.Guilds], rest, allowedMentions: { parse: [] } });
    this.client.on(Events.InteractionCreate, (interaction) => {
      if (this.stopping) return;
      if (interaction.isChatInputCommand()) void this.onCommand(interaction);
      else if (interaction.isAutocomplete()) void this.onAutocomplete(interaction);
      else if (interaction.isButton()) void this.onButton(interaction);
    });
    this.client.on(Events.Error, (e) => this.log(`client error: ${e.message}`));
    this.client.on(Events.ShardDisconnect, (_, id) => this.log(`shard ${id} disconnected`));
  }

  /** Logs in and registers the commands; resolves when the bot is ready for interactions. */
  start(): Promise<void> {
    this.readyPromise ??= new Promise<void>((resolve, reject) => {
      this.client.once(Events.ClientReady, async (client) => {
        try {
          if (this.options.registerCommands === false) {
            this.log(`logged in as ${client.user.tag} (${this.options.shardLabel ?? 'shard'}); the commands are registered by the shard manager`);
            resolve();
            return;
          }
          const body = discordCommandsJson(this.bot.commands, this.config);
          if (this.config.guildId) await client.application.commands.set(body, this.config.guildId);
          else await client.application.commands.set(body);
          this.log(`logged in as ${client.user.tag}; ${body.length} commands registered ${this.config.guildId ? `in guild ${this.config.guildId}` : 'globally (may take up to an hour to appear)'}`);
          resolve();
        } catch (e) {
          reject(new Error(`could not register the slash commands: ${(e as Error).message}`));
        }
      });
      this.client.login(this.config.token).catch((e: Error) => reject(new Error(`could not log in to Discord: ${e.message}`)));
    });
    return this.readyPromise;
  }

  /** Stops handling new interactions (answers in flight can still be sent). */
  pause(): void {
    this.stopping = true;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.client.destroy();
  }

  /** A reply to the person who asked for a job, for jobs recovered after a restart. */
  replyFor(record: JobRecord): Reply | undefined {
    if (!record.address?.channelId) return undefined;
    // The limit Discord gave when the job was asked for (its files were fitted to it).
    return orderedReply(new RecoveredReply(this.client, { ...record.address, userId: record.who.userId }, record.uploadLimitBytes ?? this.config.uploadLimitBytes), this.log);
  }

  private requester(interaction: Repliable | AutocompleteInteraction): Requester {
    const inGuild = interaction.inGuild();
    return {
      platform: 'discord',
      userId: interaction.user.id,
      userName: interaction.user.username,
      serverId: interaction.guildId ?? undefined,
      channelId: interaction.channelId ?? `dm-${interaction.user.id}`,
      isManager: inGuild ? (interaction.memberPermissions?.has(PermissionFlagsBits.ManageGuild) ?? false) : true,
    };
  }

  /**
   * A moderator of the community loop: in a server (in the DISCORD_GUILD_ID one, when that is
   * set), with Manage Server or one of NOCTURNE_MODERATOR_ROLE_IDS. Never in a DM: the model is
   * shared by every server, so a DM makes nobody its moderator.
   */
  private isModerator(interaction: Repliable): boolean {
    if (!interaction.inGuild()) return false;
    if (this.config.guildId && interaction.guildId !== this.config.guildId) return false;
    if (interaction.memberPermissions?.has(PermissionFlagsBits.ManageGuild)) return true;
    const wanted = this.config.moderatorRoleIds ?? [];
    if (wanted.length === 0) return false;
    const member = interaction.member;
    const roles: string[] = !member ? [] : Array.isArray(member.roles) ? member.roles : [...member.roles.cache.keys()];
    return roles.some((r) => wanted.includes(r));
  }

  /** Posts a notice to the moderators' channel (NOCTURNE_DISCORD_MODERATOR_CHANNEL), unless it was answered there. */
  async announce(m: InfoMessage, from?: ChannelRef): Promise<void> {
    const channelId = this.config.moderatorChannelId;
    if (!channelId || (from?.platform === 'discord' && from.channelId === channelId)) return;
    const files = await infoFiles(m);
    await this.client.rest.post(Routes.channelMessages(channelId), {
      body: { ...infoBody(m), allowed_mentions: { parse: [] }, attachments: files.map((f, id) => ({ id, filename: f.name })) },
      files,
    });
  }

  private address(interaction: Repliable): ReplyAddress {
    return {
      applicationId: interaction.applicationId,
      token: interaction.token,
      channelId: interaction.channelId ?? '',
      createdAt: String(Date.now()),
    };
  }

  private async onCommand(interaction: ChatInputCommandInteraction): Promise<void> {
    const reply = orderedReply(new InteractionReply(interaction, discordUploadLimit(interaction, this.config.uploadLimitBytes), this.log), this.log);
    const raw: RawOptions = {};
    for (const option of interaction.options.data) {
      if (option.attachment) {
        const a = option.attachment;
        const attachment: Attachment = { name: a.name, bytes: a.size, contentType: a.contentType ?? undefined, download: () => downloadAttachment(a.url, { allowedHosts: this.config.attachmentHosts ?? DISCORD_ATTACHMENT_HOSTS, maxBytes: attachmentByteLimit(a.size), declaredBytes: a.size }) };
        raw[option.name] = attachment;
      } else if (option.value !== undefined) {
        raw[option.name] = option.value;
      }
    }
    await runCommand({ bot: this.bot, name: interaction.commandName, raw, who: this.requester(interaction), isModerator: this.isModerator(interaction), address: this.address(interaction), reply, usage: discordUsage, log: this.log });
  }

  private async onAutocomplete(interaction: AutocompleteInteraction): Promise<void> {
    try {
      const focused = interaction.options.getFocused(true);
      const choices = autocompleteChoices(this.bot, interaction.commandName, focused.name, String(focused.value ?? ''));
      await interaction.respond(choices.map((c) => ({ name: clip(c.name, 100), value: c.value })));
    } catch (e) {
      this.log(`autocomplete failed: ${(e as Error).message}`);
    }
  }

  private async onButton(interaction: ButtonInteraction): Promise<void> {
    const reply = orderedReply(new InteractionReply(interaction, discordUploadLimit(interaction, this.config.uploadLimitBytes), this.log), this.log);
    await runButton({ bot: this.bot, customId: interaction.customId, who: this.requester(interaction), address: this.address(interaction), reply, log: this.log });
  }
}
