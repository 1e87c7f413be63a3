/**
 * Continuing a finished piece, one rule for the /continue command with a job id
 * (commands/continue.ts) and the Continue button under a piece (commands/shared/actions.ts): the seed is
 * that job's MIDI file, named after the job, and the composer is the one it was composed as.
 * Whether the asker may reach the job at all (src/jobs/tenant.ts) is checked by the caller first.
 */
import { readFile } from 'node:fs/promises';
import type { JobRecord } from './types.ts';

export interface Continuation {
  seedMidi: Uint8Array;
  /** "job <id>": how the seed is named in the new job's record and post. */
  seedName: string;
  composer: string;
}

/** The seed of a continuation of `parent`; throws an Error with one line when it cannot be continued. */
export async function continuationOf(parent: JobRecord): Promise<Continuation> {
  if (parent.state !== 'done' || !parent.outputs) throw new Error(`job ${parent.id} has not finished yet: continue it once it is posted`);
  let seedMidi: Uint8Array;
  try {
    seedMidi = new Uint8Array(await readFile(parent.outputs.midi));
  } catch {
    throw new Error(`the MIDI file of job ${parent.id} is gone; use /show ${parent.id} or Regenerate first`);
  }
  return { seedMidi, seedName: `job ${parent.id}`, composer: parent.outputs.composer };
}
