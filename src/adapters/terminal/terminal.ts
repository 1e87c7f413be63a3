/**
 * The terminal front end (the embedded default of `npm start`): a prompt where `/compose chopin
 * 500` and the other commands work as in chat. Files go to <outDir>/<job-id>/.
 *
 * Interactive (stdin is a TTY): each line runs in the background, so more can be typed while a
 * piece is composing. Not interactive (`echo "/compose chopin 32" | npm start`): lines run one
 * after another, and `ended` resolves at end of input once every job has finished.
 *
 * The result buttons are typed: /continue <job-id>, /variation <job-id>, /regenerate <job-id>.
 */
import { readFile, stat } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { basename, relative, resolve } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { actionId, type ActionName } from '../../../commands/shared/actions.ts';
import type { Attachment, BotContext, CommandSpec, InfoMessage, Reply, ResultPost } from '../../../commands/shared/command.ts';
import { findCommand, orderedReply, runButton, runCommand } from '../../chat/dispatch.ts';
import { parseOptionWords, splitWords, usageText, type RawOptions } from '../../chat/options.ts';
import type { JobRecord, Requester } from '../../jobs/types.ts';
import type { FrontEnd } from '../frontEnd.ts';

export interface TerminalOptions {
  input?: NodeJS.ReadableStream;
  output?: NodeJS.WritableStream;
  /** Prompt and run lines in the background; default: whether input is a TTY. */
  interactive?: boolean;
  log?: (line: string) => void;
}

const BUTTON_WORDS: ActionName[] = ['variation', 'regenerate'];

export function terminalUsage(spec: CommandSpec): string {
  return usageText(spec, '/', 'a path to a .mid file', true).join('\n');
}

function terminalRequester(): Requester {
  let name = 'you';
  try {
    name = userInfo().username || name;
  } catch {
    // no passwd entry (containers): keep the default
  }
  return { platform: 'terminal', userId: name, userName: name, channelId: 'terminal', isManager: true };
}

async function fileAttachment(path: string): Promise<Attachment | string> {
  const full = resolve(path);
  try {
    const s = await stat(full);
    if (!s.isFile()) return `${path} is not a file`;
    return { name: basename(full), bytes: s.size, download: async () => new Uint8Array(await readFile(full)) };
  } catch {
    return `no such file: ${path}`;
  }
}

export class TerminalAdapter implements FrontEnd {
  readonly platform = 'terminal' as const;
  /** Resolves at end of input (or after stop()), once the lines still running have finished. */
  readonly ended: Promise<void>;
  private release!: () => void;
  private running: Promise<void> | undefined;
  private readonly output: NodeJS.WritableStream;
  private readonly input: NodeJS.ReadableStream;
  private readonly interactive: boolean;
  private readonly log: (line: string) => void;
  private readonly who = terminalRequester();
  private readonly pending = new Set<Promise<void>>();
  private rl: Interface | undefined;
  private closed = false;

  constructor(
    private readonly bot: BotContext,
    options: TerminalOptions = {},
  ) {
    this.input = options.input ?? process.stdin;
    this.output = options.output ?? process.stdout;
    this.interactive = options.interactive ?? Boolean((this.input as NodeJS.ReadStream).isTTY);
    this.log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.ended = new Promise<void>((resolve) => (this.release = resolve));
  }

  /** Opens the prompt (or starts reading piped lines) and resolves at once; see `ended`. */
  async start(): Promise<void> {
    this.running ??= this.run();
    void this.running.finally(this.release);
  }

  async stop(): Promise<void> {
    this.close();
  }

  /** Reads commands until end of input (or close()), then waits for the jobs still running. */
  private async run(): Promise<void> {
    const names = this.bot.composerNames;
    const example = (names.find((n) => n.toLowerCase() === 'chopin') ?? names[0] ?? 'any').toLowerCase();
    this.print(`nocturne: model ${this.bot.model.version} with ${names.length} composers. Try /compose ${example} 250, or /help.`);
    const rl = createInterface({ input: this.input, output: this.interactive ? this.output : undefined, terminal: this.interactive });
    this.rl = rl;
    rl.on('SIGINT', () => this.close()); // Ctrl-C at the prompt: finish the jobs in flight, then exit
    if (this.interactive) {
      rl.setPrompt('nocturne> ');
      rl.prompt();
    }
    for await (const line of rl) {
      if (this.closed) break;
      const work = this.runLine(line);
      if (this.interactive) {
        this.track(work);
        rl.prompt();
      } else {
        await work;
      }
    }
    await Promise.allSettled([...this.pending]);
  }

  /** Stops reading input; `ended` resolves once running lines finish. */
  close(): void {
    this.closed = true;
    this.rl?.close();
  }

  /** A reply for a job recovered after a restart. */
  replyFor(record: JobRecord): Reply {
    return orderedReply(this.reply(`job ${record.id}`), this.log);
  }

  private track(p: Promise<void>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  private print(text: string): void {
    if (this.interactive && this.rl) {
      // Output arrives while the user may be typing: clear the prompt line, print, redraw it.
      this.output.write(`\r\x1b[K${text}\n`);
      this.rl.prompt(true);
      return;
    }
    this.output.write(`${text}\n`);
  }

  async runLine(line: string): Promise<void> {
    const words = splitWords(line.trim());
    if (words.length === 0 || words[0].startsWith('#')) return;
    const name = words[0].replace(/^\//, '').toLowerCase();
    if (name === 'quit' || name === 'exit') {
      this.close();
      return;
    }
    const reply = orderedReply(this.reply(words.join(' ')), this.log);
    if ((BUTTON_WORDS as string[]).includes(name)) {
      const id = words[1]?.toLowerCase();
      if (!id) return reply.error(`give the job id: /${name} <job-id>`);
      await runButton({ bot: this.bot, customId: actionId(name as ActionName, id), who: this.who, reply, log: this.log });
      return;
    }
    const spec = findCommand(this.bot, name);
    const raw: RawOptions = {};
    const problems: string[] = [];
    if (spec) {
      const parsed = parseOptionWords(spec, words.slice(1), true);
      problems.push(...parsed.problems);
      for (const [key, value] of Object.entries(parsed.raw)) {
        const option = spec.options.find((o) => o.name === key);
        if (option?.kind === 'attachment' && typeof value === 'string') {
          const file = await fileAttachment(value);
          if (typeof file === 'string') problems.push(file);
          else raw[key] = file;
        } else raw[key] = value;
      }
    }
    // Whoever sits at the bot's own terminal moderates it.
    await runCommand({ bot: this.bot, name, raw, who: this.who, isModerator: true, reply, usage: terminalUsage, problems, log: this.log });
  }

  private reply(label: string): Reply {
    const say = async (text: string) => this.print(text);
    return {
      progress: (text) => say(`  ${label}: ${text}`),
      info: (m: InfoMessage) => say([m.title, ...m.lines.map((l) => `  ${l}`), ...(m.files ?? []).map((f) => `  ${relative(process.cwd(), f.path) || f.path}`)].join('\n')),
      error: (line) => say(`  ${label}: error: ${line}`),
      result: (post: ResultPost) => {
        const fields = post.fields.map(([k, v]) => `${k} ${v}`).join(' · ');
        const files = post.files.map((f) => `  ${relative(process.cwd(), f.path) || f.path}`);
        const next = `  next: /continue ${post.jobId} · /variation ${post.jobId} · /regenerate ${post.jobId} · /show ${post.jobId}`;
        return say([`${post.title}`, `  ${fields}`, ...(post.notice ? [`  note: ${post.notice}`] : []), ...files, next, `  ${post.attribution}`].join('\n'));
      },
    };
  }
}
