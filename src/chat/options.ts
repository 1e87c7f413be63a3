/**
 * Command options, platform-neutral and pure: checking raw values against a command's
 * declaration, parsing a typed line ("chopin 500 temperature=0.9") into raw values, and the
 * usage text for text-based front ends (Slack, terminal).
 */
import { formatBytes, isAttachment, type Attachment, type CommandSpec, type OptionSpec, type OptionValue } from '../../commands/shared/command.ts';

export type RawValue = string | number | boolean | Attachment;
export type RawOptions = Record<string, RawValue | undefined>;

export interface CheckedOptions {
  options: Record<string, OptionValue | undefined>;
  /** One entry per problem, each saying what to change. Empty when all is well. */
  problems: string[];
}


/**
 * A number as people type it: digits with an optional sign and decimal point. Number() alone also
 * takes 0x10, 1e3, 0b11 and Infinity, which nobody means as "16" or "1000" notes. NaN otherwise.
 */
export function parsePlainNumber(text: string): number {
  const t = text.trim();
  return /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$/.test(t) ? Number(t) : Number.NaN;
}

/** How a boolean option is typed: `score`, `score=yes`, `score:off`. */
const YES = ['yes', 'y', 'true', 'on', '1'];
const NO = ['no', 'n', 'false', 'off', '0'];

function rangeText(o: OptionSpec): string {
  if (o.min !== undefined && o.max !== undefined) return `from ${o.min} to ${o.max}`;
  if (o.min !== undefined) return `of at least ${o.min}`;
  if (o.max !== undefined) return `of at most ${o.max}`;
  return '';
}

function checkOne(o: OptionSpec, raw: RawValue): { value?: OptionValue; problem?: string } {
  switch (o.kind) {
    case 'attachment': {
      if (!isAttachment(raw)) return { problem: `${o.name} must be an attached file` };
      if (o.max !== undefined && raw.bytes > o.max) return { problem: `${raw.name} is ${formatBytes(raw.bytes)}, over the ${formatBytes(o.max)} limit for ${o.name}: attach a smaller file` };
      return { value: raw };
    }
    case 'integer':
    case 'number': {
      if (isAttachment(raw) || typeof raw === 'boolean') return { problem: `${o.name} must be a number` };
      const text = String(raw).trim();
      const v = typeof raw === 'number' ? raw : parsePlainNumber(text);
      const whole = o.kind === 'integer';
      const what = `${o.name} must be ${whole ? 'a whole number' : 'a number'} ${rangeText(o)}`.trim();
      const hint = o.suggestions?.length ? ` (${o.suggestions.map((s) => s.value).join(' or ')} are typical)` : '';
      if (!Number.isFinite(v) || (whole && !Number.isInteger(v))) return { problem: `${what}${hint}, got ${JSON.stringify(String(raw))}` };
      if ((o.min !== undefined && v < o.min) || (o.max !== undefined && v > o.max)) return { problem: `${what}${hint}, got ${v}` };
      if (o.choices && !o.choices.some((c) => c.value === v)) return { problem: `${o.name} must be one of ${o.choices.map((c) => c.value).join(', ')}, got ${v}` };
      return { value: v };
    }
    case 'boolean': {
      if (typeof raw === 'boolean') return { value: raw };
      const text = isAttachment(raw) ? '' : String(raw).trim().toLowerCase();
      if (YES.includes(text)) return { value: true };
      if (NO.includes(text)) return { value: false };
      return { problem: `${o.name} must be yes or no, got ${JSON.stringify(isAttachment(raw) ? raw.name : String(raw))}` };
    }
    case 'string': {
      if (isAttachment(raw)) return { problem: `${o.name} must be text, not a file` };
      const text = String(raw).trim();
      if (o.choices) {
        const match = o.choices.find((c) => String(c.value).toLowerCase() === text.toLowerCase() || c.name.toLowerCase() === text.toLowerCase());
        if (!match) return { problem: `${o.name} must be one of ${o.choices.map((c) => c.value).join(', ')}, got ${JSON.stringify(text)}` };
        return { value: match.value };
      }
      if (o.min !== undefined && text.length < o.min) return { problem: `${o.name} must be at least ${o.min} characters` };
      if (o.max !== undefined && text.length > o.max) return { problem: `${o.name} must be at most ${o.max} characters` };
      if (o.parse) {
        const value = o.parse(text);
        if (value === undefined) return { problem: `${o.name} must be ${o.expects ?? 'one of the values offered'}, got ${JSON.stringify(text)}` };
        return { value };
      }
      return { value: text };
    }
  }
}

/** Checks raw option values against a command's declaration. */
export function checkOptions(spec: CommandSpec, raw: RawOptions): CheckedOptions {
  const problems: string[] = [];
  const options: Record<string, OptionValue | undefined> = {};
  const known = new Map(spec.options.map((o) => [o.name.toLowerCase(), o]));
  for (const name of Object.keys(raw)) {
    if (raw[name] !== undefined && !known.has(name.toLowerCase())) {
      problems.push(`/${spec.name} has no option ${JSON.stringify(name)}${spec.options.length ? ` (options: ${spec.options.map((o) => o.name).join(', ')})` : ''}`);
    }
  }
  const byLower = new Map(Object.entries(raw).map(([k, v]) => [k.toLowerCase(), v]));
  for (const o of spec.options) {
    const value = byLower.get(o.name.toLowerCase());
    if (value === undefined || (typeof value === 'string' && value.trim() === '')) {
      if (o.required) problems.push(`give ${o.name}: ${o.description}`);
      continue;
    }
    const checked = checkOne(o, value);
    if (checked.problem) problems.push(checked.problem);
    else options[o.name] = checked.value;
  }
  return { options, problems };
}

/** Splits a line into words, keeping "quoted words" together, also after a name (`key="D minor"`). */
export function splitWords(text: string): string[] {
  const words: string[] = [];
  const re = /([A-Za-z][\w-]*[=:])?(?:"([^"]*)"|'([^']*)')|(\S+)/g;
  for (let m = re.exec(text); m; m = re.exec(text)) words.push(m[4] ?? `${m[1] ?? ''}${m[2] ?? m[3]}`);
  return words;
}

const NAMED_WORD = /^([A-Za-z][\w-]*)[=:](.*)$/;

/**
 * Parses the words after a command name: `name=value` or `name:value` set an option by name
 * (`key=D minor` takes the next word when the two read as one key), the bare name of a yes/no
 * option turns it on (`score`), other words fill the text and number options in declared order
 * (not the `named` ones). Attachments cannot be typed (the adapter adds them), except on the
 * terminal, where a path is passed as a word.
 */
export function parseOptionWords(spec: CommandSpec, words: string[], typedAttachments = false): { raw: RawOptions; problems: string[] } {
  const raw: RawOptions = {};
  const problems: string[] = [];
  const positional = spec.options.filter((o) => !o.named && (typedAttachments || o.kind !== 'attachment'));
  const byName = new Map(spec.options.map((o) => [o.name.toLowerCase(), o]));
  const unnamed: string[] = [];
  for (let w = 0; w < words.length; w++) {
    const word = words[w];
    const m = NAMED_WORD.exec(word);
    const option = byName.get((m ? m[1] : word).toLowerCase());
    if (m && option) {
      // "key=D minor": the next word belongs to the value when the two read as one.
      const next = words[w + 1];
      const joined = next !== undefined && !NAMED_WORD.test(next) && option.parse?.(`${m[2]} ${next}`) !== undefined;
      raw[option.name] = joined ? `${m[2]} ${next}` : m[2];
      if (joined) w++;
    } else if (m && !/^https?$/i.test(m[1])) raw[m[1]] = m[2]; // reported as unknown by checkOptions
    else if (!m && option?.kind === 'boolean') raw[option.name] = 'yes'; // a bare "score" turns it on
    else unnamed.push(word);
  }
  for (const [i, word] of unnamed.entries()) {
    const next = positional.find((o) => raw[o.name] === undefined && (!o.accepts || o.accepts(word)));
    if (next?.rest) {
      // A free-text option (a reason) takes the rest of the line.
      raw[next.name] = unnamed.slice(i).join(' ');
      break;
    }
    if (next) raw[next.name] = word;
    else problems.push(`unexpected ${JSON.stringify(word)} after /${spec.name}`);
  }
  return { raw, problems };
}

function optionHint(o: OptionSpec): string {
  const parts: string[] = [];
  if (o.choices) parts.push(o.choices.map((c) => c.value).join(' | '));
  else if (o.kind === 'boolean') parts.push('yes | no');
  else if (o.kind === 'integer' || o.kind === 'number') {
    const offered = o.suggestions?.length ? `${o.suggestions.map((s) => s.value).join(' or ')}; ` : '';
    if (o.min !== undefined && o.max !== undefined) parts.push(`${offered}${o.min}–${o.max}`);
  }
  if (o.defaultText) parts.push(`default ${o.defaultText}`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

/** "/compose <composer> [notes] [temperature] [seed]" for text front ends. */
export function usageLine(spec: CommandSpec, prefix = '/', typedAttachments = false): string {
  const args = spec.options
    .filter((o) => typedAttachments || o.kind !== 'attachment')
    .map((o) => {
      const typed = !o.named || o.kind === 'boolean' ? o.name : `${o.name}=…`;
      return o.required ? `<${typed}>` : `[${typed}]`;
    });
  return [`${prefix}${spec.name}`, ...args].join(' ');
}

/** Usage line plus one line per option, for text front ends. */
export function usageText(spec: CommandSpec, prefix = '/', attachmentHint = 'attach the file', typedAttachments = false): string[] {
  const lines = [`${usageLine(spec, prefix, typedAttachments)} — ${spec.description}`];
  for (const o of spec.options) {
    const what = o.kind === 'attachment' ? `${o.description} (${attachmentHint})` : o.description;
    lines.push(`    ${o.name}${o.required ? '' : ' (optional)'}: ${what}${optionHint(o)}`);
  }
  return lines;
}
