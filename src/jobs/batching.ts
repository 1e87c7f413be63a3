/**
 * The batching rule, one for both places that batch compose jobs: the in-process queue
 * (src/jobs/queue.ts) and the Redis worker (src/scaleout/worker.ts).
 *
 * A batch is the first waiting job and the next ones of similar length (within a factor of two of
 * the first job's notes, either way), in arrival order, up to `maxBatch`: the jobs of one batch are
 * sampled in one pass, so a 16-note request must not wait for a 2000-note one. Pure.
 */

/** Whether a job of `notes` notes may join a batch whose first job has `headNotes`. */
export function similarLength(notes: number, headNotes: number): boolean {
  return notes <= headNotes * 2 && notes * 2 >= headNotes;
}

/** The next batch from `waiting` (in order), and the jobs left waiting (in order). */
export function takeBatch<T>(waiting: readonly T[], notesOf: (job: T) => number, maxBatch: number): { batch: T[]; rest: T[] } {
  if (waiting.length === 0) return { batch: [], rest: [] };
  const headNotes = notesOf(waiting[0]);
  const batch: T[] = [];
  const rest: T[] = [];
  for (const job of waiting) {
    if (batch.length < maxBatch && similarLength(notesOf(job), headNotes)) batch.push(job);
    else rest.push(job);
  }
  return { batch, rest };
}
