/**
 * A separate process that races for the retraining lock (tests/store-backends.test.ts). argv[2]:
 * the store location as JSON. It opens the community store, prints "ready", then for every
 * "go <round>" line on stdin tries to take the lock once and prints the attempt as one JSON line;
 * "exit" closes the store and ends it. The parent sends "go" to every racer at once.
 */
import { createInterface } from 'node:readline';
import { acquireRetrainLock, newLockOwner } from '../../src/community/lock.ts';
import { CommunityStore } from '../../src/community/store.ts';
import type { StoreLocation } from '../../src/storage/backend.ts';

const location = JSON.parse(process.argv[2]!) as StoreLocation;
const store = await CommunityStore.open(location, (line) => console.error(line));
console.log('ready');
for await (const line of createInterface({ input: process.stdin })) {
  const [command, round] = line.trim().split(' ');
  if (command === 'exit') break;
  if (command !== 'go') continue;
  const runId = `racer-${process.pid}-${round}`;
  try {
    const attempt = await acquireRetrainLock(store, newLockOwner(runId), 60 * 60_000);
    console.log(JSON.stringify({ round: Number(round), runId, acquired: attempt.acquired, replaced: attempt.acquired ? attempt.replaced?.runId : undefined, holder: attempt.acquired ? undefined : attempt.holder.runId }));
  } catch (e) {
    console.log(JSON.stringify({ round: Number(round), runId, error: (e as Error).message }));
  }
}
await store.close();
// stdin stays referenced after the loop; the parent waits for this exit.
process.exit(0);
