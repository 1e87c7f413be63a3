/**
 * The community loop's texts, shared by its commands and the bot's CommunityService
 * (src/chat/community.ts, which posts the schedule's verdicts): metrics, a retraining run's
 * verdict, how a requester is named, and the line for a bot whose community loop is off (pure).
 */
import type { RetrainOutcome } from '../../src/community/retrain.ts';
import type { Requester } from '../../src/jobs/types.ts';
import { PLATFORM_NAMES, type InfoFile, type InfoMessage, type ServingSwitch } from './command.ts';

export function formatMetrics(metrics: Record<string, number>, max = 4): string {
  return Object.entries(metrics)
    .slice(0, max)
    .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`)
    .join(', ');
}

export function formatSeconds(seconds: number): string {
  const s = Math.round(seconds);
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
}

const TITLES: Record<RetrainOutcome['status'], (o: RetrainOutcome) => string> = {
  promoted: (o) => `${o.version} promoted`,
  rejected: (o) => `${o.version ?? 'the candidate'} not promoted`,
  skipped: () => 'skipped',
  busy: () => 'busy',
  failed: () => 'failed',
};

/** The verdict of a run: the reason, before/after metrics, serving change, data, and the curve. */
export function retrainMessage(o: RetrainOutcome, heading = 'Retraining', switched?: ServingSwitch): InfoMessage {
  const lines = [o.reason];
  if (o.before && o.after) {
    lines.push(`validation NLL (nats per note, lower is better): ${o.before.nll.toFixed(4)} → ${o.after.nll.toFixed(4)} on ${o.after.validationPieces} pieces (${o.after.validationNotes} notes)`);
    lines.push(`similarity of generated pieces to the corpus: ${o.before.outputSimilarity.toFixed(3)} → ${o.after.outputSimilarity.toFixed(3)}`);
  }
  if (o.status === 'promoted' || o.status === 'rejected') {
    const data = [`${o.contributionsUsed} contribution${o.contributionsUsed === 1 ? '' : 's'} trained on, ${o.heldBack} held back for validation`];
    if (o.newComposers.length) data.push(`new composers: ${o.newComposers.join(', ')}`);
    if (o.waitingLabels.length) data.push(`trained as "any" until they have enough pieces: ${o.waitingLabels.map((w) => `${w.label} (${w.pieces})`).join(', ')}`);
    lines.push(`data: ${data.join('; ')}`);
    if (o.metrics && Object.keys(o.metrics).length) lines.push(`${o.version} training metrics: ${formatMetrics(o.metrics)}`);
  }
  if (o.servingBefore) lines.push(o.servingAfter && o.servingAfter !== o.servingBefore ? `serving: ${o.servingBefore} → ${o.servingAfter}` : `serving: ${o.servingBefore} (unchanged)`);
  if (switched && o.status === 'promoted') {
    lines.push(switched.ok ? `the bot composes with ${switched.version} from now on; /rollback undoes it` : `but the bot could not load it (${switched.error}) and keeps composing with the previous model`);
  }
  if (o.status === 'rejected' && o.version) lines.push(`kept as ${o.version}; /rollback ${o.version} would serve it anyway`);
  if (o.runId) lines.push(`run ${o.runId}, ${formatSeconds(o.seconds)}`);
  const files: InfoFile[] = o.curvePng ? [{ path: o.curvePng, name: `training-curve-${o.version ?? o.runId}.png`, contentType: 'image/png' }] : [];
  return { title: `${heading}: ${TITLES[o.status](o)}`, lines, ...(files.length ? { files } : {}) };
}

/** "Registry" and "contribution" errors from the engine side are one line for the user, not a fault. */
export function isUserFacingError(e: unknown): e is Error {
  return e instanceof Error && (e.name === 'RegistryError' || e.name === 'ContributionError');
}

/** How a moderator or uploader is named in records and messages: "clara (Discord)". */
export function requesterName(who: Requester): string {
  return `${who.userName} (${PLATFORM_NAMES[who.platform]})`;
}

/** Said when a community command runs on a bot whose community loop is off. */
export const COMMUNITY_OFF = 'contributions and retraining are off on this bot (see NOCTURNE_COMMUNITY in .env.example)';
