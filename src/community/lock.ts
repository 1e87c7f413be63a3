/**
 * The retraining lock: one row in the community store, so only one retraining runs at a time
 * across every process that shares the data folder. Taking it is an atomic insert-if-absent;
 * taking over a stale one is an atomic compare-and-set on the exact stale value, so two
 * processes that both find it stale cannot both win.
 *
 * Stale means: the owner's process is gone (same host: the pid no longer exists), or it has not
 * refreshed its heartbeat for `staleMs` (any host; also covers a reused pid).
 */
import { hostname } from 'node:os';
import type { CommunityStore } from './store.ts';

export const RETRAIN_LOCK_KEY = 'lock:retrain';

export interface LockOwner {
  runId: string;
  pid: number;
  host: string;
  startedAt: string;
  heartbeatAt: string;
  trigger?: string;
  requestedBy?: string;
}

export type LockAttempt = { acquired: true; replaced?: LockOwner } | { acquired: false; holder: LockOwner };

export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether the owner still counts as running. */
export function ownerIsLive(owner: LockOwner, staleMs: number, now = Date.now()): boolean {
  if (owner.host === hostname() && !processExists(owner.pid)) return false;
  return now - Date.parse(owner.heartbeatAt) < staleMs;
}

export function newLockOwner(runId: string, extra: Pick<LockOwner, 'trigger' | 'requestedBy'> = {}, now = new Date()): LockOwner {
  return { runId, pid: process.pid, host: hostname(), startedAt: now.toISOString(), heartbeatAt: now.toISOString(), ...extra };
}

export async function acquireRetrainLock(store: CommunityStore, owner: LockOwner, staleMs: number): Promise<LockAttempt> {
  for (let attempt = 0; attempt < 5; attempt++) {
    if (await store.insertIfAbsent(RETRAIN_LOCK_KEY, owner)) return { acquired: true };
    const held = await store.getRaw<LockOwner>(RETRAIN_LOCK_KEY);
    if (!held) continue; // released in between: try again
    if (ownerIsLive(held.value, staleMs)) return { acquired: false, holder: held.value };
    if (await store.compareAndSet(RETRAIN_LOCK_KEY, held.text, owner)) return { acquired: true, replaced: held.value };
  }
  const holder = await store.get<LockOwner>(RETRAIN_LOCK_KEY);
  if (holder) return { acquired: false, holder };
  throw new Error('retraining lock: the store kept changing under us; try again');
}

/** The current holder, if any, and whether it is live. */
export async function readRetrainLock(store: CommunityStore, staleMs: number): Promise<{ owner: LockOwner; live: boolean } | undefined> {
  const owner = await store.get<LockOwner>(RETRAIN_LOCK_KEY);
  return owner ? { owner, live: ownerIsLive(owner, staleMs) } : undefined;
}

/** Refreshes the heartbeat if `runId` still holds the lock; false if it lost it. */
export async function refreshRetrainLock(store: CommunityStore, runId: string, now = new Date()): Promise<boolean> {
  const held = await store.getRaw<LockOwner>(RETRAIN_LOCK_KEY);
  if (!held || held.value.runId !== runId) return false;
  return store.compareAndSet(RETRAIN_LOCK_KEY, held.text, { ...held.value, heartbeatAt: now.toISOString() });
}

/** Releases the lock if `runId` holds it. */
export async function releaseRetrainLock(store: CommunityStore, runId: string): Promise<boolean> {
  const held = await store.getRaw<LockOwner>(RETRAIN_LOCK_KEY);
  if (!held || held.value.runId !== runId) return false;
  return store.compareAndDelete(RETRAIN_LOCK_KEY, held.text);
}
