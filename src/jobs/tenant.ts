/**
 * Tenants: the server, workspace or private conversation a job belongs to. A job id reaches its
 * job only from the tenant that made it, so that an id seen (or guessed) elsewhere cannot re-post
 * a piece in another server, and Variation/Regenerate never feed one tenant's uploaded seed MIDI
 * to a job in another. Inside a tenant every member reaches every job: the pieces and their
 * buttons are posted where everyone there sees them (docs/chat.md, "Who reaches a job").
 *
 * - Discord: `discord:<guild id>`; a DM (no guild) is `discord:dm:<user id>`.
 * - Slack: `slack:<team id>`; a direct message with the bot (channel id D…) is
 *   `slack:dm:<user id>`, and so is a request that came without a team id.
 * - The terminal: `terminal`.
 */
import type { JobRecord, Requester } from './types.ts';
import type { JobStore } from './store.ts';
import { looksLikeJobId } from './store.ts';

/** Slack's one-to-one conversations with the bot have ids starting with D. */
function isSlackDirectMessage(channelId: string): boolean {
  return /^D[A-Z0-9]+$/.test(channelId);
}

/** The tenant a request comes from (stored on each job it makes). */
export function tenantOf(who: Requester): string {
  switch (who.platform) {
    case 'terminal':
      return 'terminal';
    case 'discord':
      return who.serverId ? `discord:${who.serverId}` : `discord:dm:${who.userId}`;
    case 'slack':
      return who.serverId && !isSlackDirectMessage(who.channelId) ? `slack:${who.serverId}` : `slack:dm:${who.userId}`;
    default:
      // Not a platform this version knows (a record from elsewhere): only that very user there.
      return `${String((who as Requester).platform)}:dm:${String((who as Requester).userId)}`;
  }
}

/**
 * The tenant of a stored job: its `tenant` field, or, for records written before that field,
 * the tenant of its stored requester (platform, server and channel ids, which every record has
 * kept). A record with neither belongs to nobody.
 */
export function jobTenant(record: Pick<JobRecord, 'tenant' | 'who'>): string | undefined {
  if (typeof record.tenant === 'string' && record.tenant !== '') return record.tenant;
  const who = record.who as Requester | undefined;
  if (!who || typeof who.platform !== 'string' || typeof who.userId !== 'string' || typeof who.channelId !== 'string') return undefined;
  return tenantOf(who);
}

/** Whether `who` may see and act on `record`: only from the tenant that made it. */
export function reachableBy(record: JobRecord, who: Requester): boolean {
  const tenant = jobTenant(record);
  return tenant !== undefined && tenant === tenantOf(who);
}

/**
 * The job `id` names, if `who` may reach it; undefined both for an unknown id and for another
 * tenant's job, so that callers answer the two alike and an id's existence does not leak.
 */
export async function reachableJob(store: JobStore, id: string, who: Requester): Promise<JobRecord | undefined> {
  const record = looksLikeJobId(id) ? await store.get(id) : undefined;
  return record && reachableBy(record, who) ? record : undefined;
}
