/**
 * A failed job's folder loses everything but its input: a failure must not leave a partial piece
 * behind (a 1.2 GB WAV stayed in out/<job>/ when the OGG fallback timed out), and a resumed job
 * starts from an empty folder (a crash mid-render leaves fluidsynth's temporary files).
 */
import { readdir, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';

/** The seed MIDI of a continuation: kept, so Regenerate and Variation still work. */
export const JOB_INPUT_FILES: readonly string[] = ['seed.mid'];

/** Removes every file in a job's folder except its input, and the folder if that leaves it empty. */
export async function removeJobOutputs(outDir: string, keep: readonly string[] = JOB_INPUT_FILES): Promise<void> {
  let names: string[];
  try {
    names = await readdir(outDir);
  } catch {
    return; // never created, or already gone
  }
  await Promise.all(names.filter((n) => !keep.includes(n)).map((n) => rm(join(outDir, n), { recursive: true, force: true })));
  if (names.every((n) => !keep.includes(n))) await rmdir(outDir).catch(() => undefined);
}
