/**
 * The short-lived credential a reply address may carry: `token`, a Discord interaction token,
 * which Discord honours for 15 minutes from the interaction. It lets a restarted bot edit the
 * original reply; it is also a credential to post as the bot in that conversation, so a job record
 * keeps it only while it can be used:
 *
 *   - when the job ends (done or failed, an apology after a restart included), it is dropped;
 *   - while the job is still open, it is dropped REPLY_TOKEN_USABLE_MS after the address was made
 *     (`createdAt`), by a timer of the process whose queue holds the job; after a crash or a stop,
 *     the next start drops the expired ones it finds before doing anything else with them.
 *
 * The other address fields (channel, application, user) stay: they say where the job was asked.
 */
import type { ReplyAddress } from './types.ts';

/**
 * How long an address's token is used and kept: 14 minutes, a minute short of Discord's 15, so
 * that an edit started just before the end does not race the expiry. After that, a recovered or
 * long-running job posts a new message in the channel instead (src/adapters/discord/discord.ts).
 */
export const REPLY_TOKEN_USABLE_MS = 14 * 60 * 1000;

/** When the address's token stops being used (ms since the epoch); undefined if it has none. A token of unknown age is already expired. */
export function replyTokenExpiresAt(address: ReplyAddress | undefined): number | undefined {
  if (!address?.token) return undefined;
  const made = Number(address.createdAt);
  return Number.isFinite(made) ? made + REPLY_TOKEN_USABLE_MS : 0;
}

/** Whether the address carries a token that may still be used at `now`. */
export function replyTokenUsable(address: ReplyAddress | undefined, now = Date.now()): boolean {
  const at = replyTokenExpiresAt(address);
  return at !== undefined && now < at;
}

/** The address without its token (the same object when it has none). */
export function withoutReplyToken<T extends ReplyAddress | undefined>(address: T): T {
  if (!address || !('token' in address)) return address;
  const { token: _token, ...rest } = address;
  return rest as T;
}
