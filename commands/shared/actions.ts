/**
 * The buttons under a finished piece. Each button's custom id names the action and the job it acts
 * on ("nocturne:variation:k3x9q2ab"), so a click works after a restart with no state in memory.
 * - continue: 250 more notes, seeded with that piece's MIDI;
 * - variation: same composer and parameters, a new random seed;
 * - regenerate: the same request with the same random seed, on the model loaded now (the same model
 *   gives the same notes again, freshly rendered; a retrained model gives its own take).
 * All three keep the piece's key, tempo and score; Variation and Regenerate also whether its seed
 * opens it (Continue continues the piece as posted, and posts the new notes).
 */
import { readFile } from 'node:fs/promises';
import type { AudioFormat } from '../../src/engine/types.ts';
import type { JobInput, JobKind, JobParams, JobRecord, ReplyAddress, Requester } from '../../src/jobs/types.ts';
import { continuationOf } from '../../src/jobs/continuation.ts';
import { reachableBy } from '../../src/jobs/tenant.ts';
import type { ResultAction } from './command.ts';

export const ACTION_PREFIX = 'nocturne';
export const CONTINUE_NOTES = 250;

export type ActionName = 'continue' | 'variation' | 'regenerate';

export const ACTION_LABELS: Record<ActionName, string> = {
  continue: `Continue +${CONTINUE_NOTES}`,
  variation: 'Variation',
  regenerate: 'Regenerate',
};

export function actionId(action: ActionName, jobId: string): string {
  return `${ACTION_PREFIX}:${action}:${jobId}`;
}

export function parseActionId(id: string): { action: ActionName; jobId: string } | undefined {
  const m = /^nocturne:(continue|variation|regenerate):([a-z0-9]{1,32})$/.exec(id);
  return m ? { action: m[1] as ActionName, jobId: m[2] } : undefined;
}

export function resultActions(jobId: string): ResultAction[] {
  return (Object.keys(ACTION_LABELS) as ActionName[]).map((a) => ({ id: actionId(a, jobId), label: ACTION_LABELS[a] }));
}

/**
 * The job a button press asks for, built from the stored job it names. Throws an Error with a
 * one-line message when that job cannot be acted on (unknown, not finished, files gone). A job of
 * another tenant (server, workspace, DM: src/jobs/tenant.ts) is answered exactly as an unknown
 * one, before anything else about it is looked at: its seed MIDI never feeds a job elsewhere.
 */
export async function jobForAction(
  action: ActionName,
  parent: JobRecord | undefined,
  jobId: string,
  who: Requester,
  address: ReplyAddress | undefined,
  format: AudioFormat,
  uploadLimitBytes: number | undefined,
): Promise<JobInput> {
  if (!parent || !reachableBy(parent, who)) throw new Error(`job ${jobId} is not in this bot's records (it may belong to another installation)`);
  const base = { parentId: parent.id, who, address, uploadLimitBytes };
  const p = parent.params;
  if (action === 'continue') {
    const { seedMidi, seedName, composer } = await continuationOf(parent);
    return { ...base, kind: 'continue', seedMidi, params: { composer, notes: CONTINUE_NOTES, temperature: p.temperature, topP: p.topP, format, seedName, ...controlsOf(p) } };
  }
  let seedMidi: Uint8Array | undefined;
  if (parent.seedPath) {
    try {
      seedMidi = new Uint8Array(await readFile(parent.seedPath));
    } catch {
      throw new Error(`the seed MIDI of job ${jobId} is gone; continue from the file again`);
    }
  }
  const kind: JobKind = action;
  const randomSeed = action === 'regenerate' ? p.randomSeed : undefined;
  return { ...base, kind, seedMidi, params: { composer: p.composer, notes: p.notes, temperature: p.temperature, topP: p.topP, format, seedName: p.seedName, randomSeed, ...controlsOf(p), ...(p.includeSeed ? { includeSeed: true } : {}) } };
}

/** The key, tempo and score a piece was asked for: the next piece a button makes keeps them. */
function controlsOf(p: JobParams): Pick<JobParams, 'key' | 'tempoBpm' | 'score'> {
  return { ...(p.key !== undefined ? { key: p.key } : {}), ...(p.tempoBpm !== undefined ? { tempoBpm: p.tempoBpm } : {}), ...(p.score !== undefined ? { score: p.score } : {}) };
}
