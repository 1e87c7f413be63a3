/**
 * From an adapter's event to a command: find the command, check its options against the
 * declaration, check permission, run execute, and turn any failure into one error line. Also the
 * autocomplete and button entry points. Adapters call only these.
 */
import type { JobRecord, Platform, ReplyAddress, Requester } from '../jobs/types.ts';
import { jobForAction, parseActionId } from '../../commands/shared/actions.ts';
import type { BotContext, CommandSpec, InfoMessage, OptionChoice, Reply, ResultPost } from '../../commands/shared/command.ts';
import { checkOptions, parsePlainNumber, type RawOptions } from './options.ts';

/** Discord shows at most 25 autocomplete choices. */
export const MAX_CHOICES = 25;

/**
 * Wraps a platform Reply so that calls run one at a time in order, a progress line that a newer
 * one has replaced before it was sent is skipped (fewer edits, fewer rate limits), nothing is
 * sent after the final result or error except further errors, and a failing platform call is
 * logged instead of thrown.
 */
export function orderedReply(reply: Reply, log: (line: string) => void): Reply {
  let chain: Promise<void> = Promise.resolve();
  let progressSeq = 0;
  let final = false;
  const run = (what: string, f: () => Promise<void>): Promise<void> => {
    const next = chain.then(f).catch((e) => log(`reply (${what}) failed: ${e instanceof Error ? e.message : String(e)}`));
    chain = next;
    return next;
  };
  return {
    uploadLimitBytes: reply.uploadLimitBytes,
    progress(text: string) {
      if (final) return Promise.resolve();
      const seq = ++progressSeq;
      return run('progress', async () => {
        if (seq === progressSeq && !final) await reply.progress(text);
      });
    },
    info(message: InfoMessage) {
      final = true;
      return run('info', () => reply.info(message));
    },
    result(post: ResultPost) {
      final = true;
      // If the files cannot be posted (a platform error, a limit), say so rather than go quiet.
      return run('result', () =>
        reply.result(post).catch(async (e: unknown) => {
          log(`posting job ${post.jobId} failed: ${e instanceof Error ? e.message : String(e)}`);
          await reply.error(`the piece is ready but its files could not be posted (${oneLine(e instanceof Error ? e.message : String(e), 200)}); try /show ${post.jobId}`);
        }),
      );
    },
    error(line: string) {
      final = true;
      return run('error', () => reply.error(oneLine(line)));
    },
  };
}

export function oneLine(text: string, max = 1800): string {
  const line = text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

export function findCommand(bot: BotContext, name: string): CommandSpec | undefined {
  const n = name.replace(/^\//, '').toLowerCase();
  return bot.commands.find((c) => c.name === n);
}

export interface Invocation {
  bot: BotContext;
  name: string;
  raw: RawOptions;
  who: Requester;
  /** May run moderator commands (the adapter decides: see CommandRequest.isModerator). */
  isModerator?: boolean;
  address?: ReplyAddress;
  reply: Reply;
  usage: (spec: CommandSpec) => string;
  /** Problems the adapter found while reading the input (e.g. stray words). */
  problems?: string[];
  log: (line: string) => void;
}

/** Who counts as a moderator, per platform, for the refusal line. */
const MODERATORS: Record<Platform, string> = {
  discord: 'people with the Manage Server permission or a moderator role',
  slack: 'the Slack users listed in NOCTURNE_SLACK_MODERATORS',
  terminal: 'the terminal',
};

/** Runs one command end to end. Never throws: every failure becomes reply.error. */
export async function runCommand(inv: Invocation): Promise<void> {
  const { bot, reply, log } = inv;
  const spec = findCommand(bot, inv.name);
  if (!spec) {
    await reply.error(`unknown command /${inv.name.replace(/^\//, '')}: try /help`);
    return;
  }
  if (spec.permission === 'manager' && !inv.who.isManager) {
    await reply.error(`/${spec.name} changes this server's settings: only people who can manage the server may use it`);
    return;
  }
  if (spec.permission === 'moderator' && !inv.isModerator) {
    await reply.error(`/${spec.name} is for moderators only (${MODERATORS[inv.who.platform]})`);
    return;
  }
  const checked = checkOptions(spec, inv.raw);
  const problems = [...(inv.problems ?? []), ...checked.problems];
  if (problems.length) {
    await reply.error(`${problems.join('; ')}. Usage: ${inv.usage(spec).split('\n')[0].split(' — ')[0]}`);
    return;
  }
  try {
    await spec.execute({ command: spec.name, options: checked.options, who: inv.who, isModerator: inv.isModerator ?? false, address: inv.address, bot, usage: inv.usage }, reply);
  } catch (e) {
    const line = e instanceof Error ? e.message.split('\n')[0] : String(e);
    log(`/${spec.name} from ${inv.who.platform}:${inv.who.userId} failed: ${e instanceof Error ? (e.stack ?? e.message) : line}`);
    await reply.error(`something went wrong with /${spec.name}: ${line}. Please try again`);
  }
}

/** Suggestions for the option being typed (at most 25), or [] if it has none. */
export function autocompleteChoices(bot: BotContext, command: string, option: string, typed: string): OptionChoice[] {
  const spec = findCommand(bot, command)?.options.find((o) => o.name === option);
  if (!spec) return [];
  if (spec.autocomplete) return spec.autocomplete(typed, bot).slice(0, MAX_CHOICES);
  const offered = spec.suggestions ?? spec.choices ?? [];
  const t = typed.trim();
  const matching = offered.filter((c) => t === '' || String(c.value).startsWith(t) || c.name.toLowerCase().startsWith(t.toLowerCase()));
  // A typed number within the limits is offered as itself, so any value can be picked.
  if ((spec.kind === 'integer' || spec.kind === 'number') && t !== '' && !spec.choices) {
    const v = parsePlainNumber(t);
    const whole = spec.kind === 'integer';
    const ok = Number.isFinite(v) && (!whole || Number.isInteger(v)) && (spec.min === undefined || v >= spec.min) && (spec.max === undefined || v <= spec.max);
    if (ok && !matching.some((c) => c.value === v)) matching.unshift({ name: String(v), value: v });
  }
  return matching.slice(0, MAX_CHOICES);
}

export interface ButtonPress {
  bot: BotContext;
  customId: string;
  who: Requester;
  address?: ReplyAddress;
  reply: Reply;
  log: (line: string) => void;
}

/** Runs a result button (Continue, Variation, Regenerate). Never throws. */
export async function runButton(press: ButtonPress): Promise<JobRecord | undefined> {
  const { bot, reply } = press;
  const parsed = parseActionId(press.customId);
  if (!parsed) {
    await reply.error('this button is not one of nocturne\'s: nothing to do');
    return undefined;
  }
  try {
    const parent = await bot.store.get(parsed.jobId);
    const settings = await bot.settingsFor(press.who);
    const input = await jobForAction(parsed.action, parent, parsed.jobId, press.who, press.address, settings.audio, reply.uploadLimitBytes);
    return await bot.runJob(input, reply);
  } catch (e) {
    await reply.error(e instanceof Error ? e.message : String(e));
    return undefined;
  }
}
