/**
 * The platform-neutral shape of a bot command. A command in commands/ declares its options once
 * (name, kind, limits, choices) and has one execute(request, reply). The adapters turn the same
 * declaration into Discord slash-command JSON, Slack usage text and terminal help, and translate
 * platform events into CommandRequests and platform messages into Reply calls.
 */
import type { Community } from '../../src/community/community.ts';
import type { ServingChange } from '../../src/community/registry.ts';
import type { RetrainOutcome, RetrainProgress, RetrainRequest } from '../../src/community/retrain.ts';
import type { ModelInfo } from '../../src/engine/types.ts';
import type { UploadKind } from '../../src/jobs/audioFit.ts';
import type { JobStore, MemberSettings, ServerSettings } from '../../src/jobs/store.ts';
import type { JobInput, JobRecord, Platform, ReplyAddress, Requester } from '../../src/jobs/types.ts';
import type { QueueStats } from '../../src/jobs/queue.ts';

export type OptionKind = 'string' | 'integer' | 'number' | 'boolean' | 'attachment';

export interface OptionChoice {
  name: string;
  value: string | number;
}

export interface OptionSpec {
  name: string;
  kind: OptionKind;
  /** One short line (Discord allows 100 characters). */
  description: string;
  required?: boolean;
  /** integer/number: smallest value; string: shortest length. */
  min?: number;
  /** integer/number: largest value; string: longest length; attachment: largest file in bytes. */
  max?: number;
  /** The only values accepted. */
  choices?: OptionChoice[];
  /** Values offered while typing; any value within the limits is accepted too. */
  suggestions?: OptionChoice[];
  /** Dynamic suggestions (e.g. composer names from the loaded model). */
  autocomplete?: (typed: string, bot: BotContext) => OptionChoice[];
  /** Shown in usage text, e.g. "250". */
  defaultText?: string;
  /**
   * For typed commands (Slack, terminal): whether an unnamed word can fill this option. Words go
   * to the first unfilled option, in declared order, that accepts them (no predicate: any word).
   */
  accepts?: (word: string) => boolean;
  /** For typed commands: this text option takes every remaining unnamed word ("spam, not piano"). */
  rest?: boolean;
  /**
   * For typed commands: set only by its name (`key="D minor"`, `tempo=96`; a boolean also by its
   * bare name, `score`), never by an unnamed word. Usage text shows it as `[name=…]`.
   */
  named?: boolean;
  /**
   * string: reads the text into the value kept (a canonical spelling), or undefined when the text
   * is not one; `expects` then says what it must be. For typed commands, a named value may take
   * the next word too when the two read as one (`key=D minor`).
   */
  parse?: (text: string) => string | undefined;
  /** What a value of this option must be, for the problem line ("a major or minor key such as …"). */
  expects?: string;
}

/** An uploaded file, not yet downloaded: commands check the size before they fetch it. */
export interface Attachment {
  name: string;
  bytes: number;
  contentType?: string;
  download(): Promise<Uint8Array>;
}

export type OptionValue = string | number | boolean | Attachment;

export function isAttachment(v: unknown): v is Attachment {
  return typeof v === 'object' && v !== null && typeof (v as Attachment).download === 'function';
}

/** A file size as people read it: "2 MiB", "340 KiB". */
export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / (1024 * 1024)).toFixed(1).replace(/\.0$/, '')} MiB`;
  if (bytes >= 1024) return `${Math.round(bytes / 1024)} KiB`;
  return `${bytes} bytes`;
}

export interface CommandRequest {
  /** The command's name, e.g. "compose". */
  command: string;
  /** Validated against the declaration: numbers are numbers, limits hold. Absent options are undefined. */
  options: Record<string, OptionValue | undefined>;
  who: Requester;
  /**
   * May moderate the community loop (Discord: Manage Server or a moderator role; Slack: a listed
   * user id; terminal: always). Commands with `permission: 'moderator'` only run when it is true.
   */
  isModerator: boolean;
  /** Where the reply goes, in a form that survives a restart (see ReplyAddress). */
  address?: ReplyAddress;
  bot: BotContext;
  /** How this platform writes a command's usage (for help and error messages). */
  usage(command: CommandSpec): string;
}

export interface ResultFile {
  path: string;
  /** File name as the user sees it, e.g. "nocturne-k3x9q2ab.mid". */
  name: string;
  /** image: the piano roll; score: the MusicXML; score-picture: the score's first page. */
  kind: UploadKind;
  contentType: string;
}

export interface ResultAction {
  /** Button custom id / action id: "nocturne:<action>:<job-id>" (see commands/shared/actions.ts). */
  id: string;
  label: string;
}

/** A finished piece, platform-neutral: each adapter lays it out (embed, Block Kit, text). */
export interface ResultPost {
  jobId: string;
  title: string;
  /** Label and value pairs: composer, notes, temperature, random seed, model, job... */
  fields: [string, string][];
  files: ResultFile[];
  /** e.g. "audio is OGG: ... over the 10 MB upload limit". */
  notice?: string;
  attribution: string;
  actions: ResultAction[];
}

/** A file that goes with an informational answer (a chart, a training curve). */
export interface InfoFile {
  path: string;
  /** File name as the user sees it. */
  name: string;
  contentType: string;
}

export interface InfoMessage {
  title: string;
  lines: string[];
  /**
   * Files to post with it (PNG charts). An answer with files is posted where everyone in the
   * channel sees it (on Slack, informational answers are otherwise ephemeral).
   */
  files?: InfoFile[];
}

/** A place a message came from, e.g. so that a moderator-channel notice is not posted twice there. */
export interface ChannelRef {
  platform: Platform;
  channelId: string;
}

/** Whether the bot managed to serve the model a registry change named. */
export type ServingSwitch = { ok: true; version: string } | { ok: false; version: string; error: string };

/**
 * The community loop as commands see it (src/chat/community.ts): the engine's Community API,
 * retraining runs this process started (so a shutdown can stop them), the engine swap that
 * follows a change of serving model, and notices to the moderators' channels.
 */
export interface CommunityContext {
  readonly community: Community;
  /** Community.retrain, remembering the run as this process's. */
  retrain(request: RetrainRequest, onProgress: (p: RetrainProgress) => void): Promise<RetrainOutcome>;
  /** Community.rollback, remembering the change as this process's (so it is not announced as another's). */
  rollback(version: string | undefined, moderator: string): Promise<ServingChange>;
  /** Resolves once the bot serves the model of the latest registry change (or failed to load it). */
  servingSwitched(): Promise<ServingSwitch>;
  /** Posts to the configured moderator channels (and logs), except in `from` where it was answered already. */
  announce(message: InfoMessage, from?: ChannelRef): Promise<void>;
}

/**
 * Where a command's answers go. The adapter decides how each call looks: Discord edits the
 * deferred reply and sends errors ephemeral; Slack posts and updates a message; the terminal prints.
 */
export interface Reply {
  /** Largest file the platform accepts, in bytes (Discord: 10 MB); undefined if no practical limit. */
  readonly uploadLimitBytes?: number;
  /** A short status that replaces the previous one ("queued #3", "composing…"). */
  progress(text: string): Promise<void>;
  /** An informational answer (styles, status, help). */
  info(message: InfoMessage): Promise<void>;
  /** The finished piece with its files and buttons. */
  result(post: ResultPost): Promise<void>;
  /** One line that says what to change; private to the user where the platform allows. */
  error(line: string): Promise<void>;
}

/** What commands can use: the model's description, the jobs, and the compose flow. */
export interface BotContext {
  readonly model: ModelInfo;
  readonly composerNames: string[];
  readonly startedAt: Date;
  readonly store: JobStore;
  readonly commands: readonly CommandSpec[];
  /** The community loop (contributions, drift, retraining), when it is on. */
  readonly community?: CommunityContext;
  queueStats(): QueueStats;
  /** The settings that apply to this member's requests: the server's (or DM channel's), with the member's own choices over them. */
  settingsFor(who: Requester): Promise<ServerSettings>;
  /** Settings of the server (or DM channel) a request came from, without anyone's own. */
  serverSettingsFor(who: Requester): Promise<ServerSettings>;
  saveSettingsFor(who: Requester, settings: ServerSettings): Promise<void>;
  /** The member's own choices (`/settings for:me`), in every server; {} when none. */
  memberSettingsFor(who: Requester): Promise<MemberSettings>;
  /** Saves the member's own choices; with none left, the server's settings apply to them again. */
  saveMemberSettingsFor(who: Requester, settings: MemberSettings): Promise<void>;
  /**
   * Submits a job and reports on it through `reply` until the result is posted (or an error):
   * queued #n → composing → rendering → result. Resolves when the job is finished.
   */
  runJob(input: JobInput, reply: Reply): Promise<JobRecord | undefined>;
  /** Re-posts a finished job's result (for `show`). */
  postResult(record: JobRecord, reply: Reply): Promise<void>;
}

export interface CommandSpec {
  name: string;
  /** One short line (Discord allows 100 characters). */
  description: string;
  options: OptionSpec[];
  /**
   * 'manager': only people who may manage the server (Discord: Manage Server).
   * 'moderator': only the community loop's moderators (see CommandRequest.isModerator).
   */
  permission?: 'anyone' | 'manager' | 'moderator';
  /**
   * Open to everyone, but execute reads who.isManager for part of it (settings: the server's own
   * are changed by managers only), so the front ends find that out as for 'manager'.
   */
  usesManager?: boolean;
  /** Part of the community loop: left out of the bot's commands when that is off. */
  community?: boolean;
  /** Longer help shown by `help <command>`. */
  details?: string[];
  execute(request: CommandRequest, reply: Reply): Promise<void>;
}

/** Platform names as users see them. */
export const PLATFORM_NAMES: Record<Platform, string> = { discord: 'Discord', slack: 'Slack', terminal: 'terminal' };
