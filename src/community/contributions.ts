/**
 * Community contributions: members' piano MIDI files, checked, de-duplicated, measured for drift
 * and kept durably for retraining. A class because it holds the store and the corpus profile and
 * serialises its writes; every decision in it is made by the pure functions it calls.
 *
 * Durability. The file is written as `<id>.mid` through a temporary name and renamed into place
 * before the keyv record that makes it count exists. A crash at any moment leaves either no
 * record (the file, if any, is an orphan that `recover()` deletes) or a record whose file is
 * complete. A user's file name is never part of a path: files are named by their generated id,
 * and an id given by a moderator is checked against the id pattern before it touches the disk.
 *
 * Duplicates. The same music (see musicIdentity.ts) as a training piece or as an earlier
 * contribution, in any status, is refused. Each hash is claimed atomically in the store before
 * the file is written, so two processes cannot both accept the same piece.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { checkMidiBytes } from '../midi/check.ts';
import { parseMidi } from '../midi/read.ts';
import { writeFileAtomic } from '../storage/files.ts';
import { tokenize } from '../tokens/tokenize.ts';
import type { CorpusProfile } from './corpusProfile.ts';
import { formatSimilarity, histogramsOf, similarityTo, type Histograms, type Similarity } from './distributions.ts';
import { musicIdentity } from './musicIdentity.ts';
import type { CommunityStore } from './store.ts';

export type ContributionStatus = 'accepted' | 'flagged' | 'rejected';

export interface ModerationEntry {
  action: 'reject' | 'restore';
  by: string;
  at: string;
  reason?: string;
}

export interface ContributionRecord {
  id: string;
  uploader: string;
  platform: string;
  /** Discord guild, Slack team, or "" (terminal, DMs). */
  server: string;
  /** Composer or style label as given (spelt like the model's composer when it matches one). */
  label?: string;
  /** The uploaded file's name, cleaned, for display only. */
  filename: string;
  /** Music hash (tokenHash of the notes, rhythm and dynamics). */
  hash: string;
  /** Hash of the rhythm and intervals, whatever the key and dynamics (musicIdentity.ts). */
  shapeHash: string;
  /** File size in bytes. */
  size: number;
  notes: number;
  durationSeconds: number;
  tempoBpm: number;
  /** ISO time of the upload. */
  time: string;
  status: ContributionStatus;
  /** Similarity to the training corpus in [0, 1] (distributions.ts). */
  similarity: number;
  drift: Similarity['perQuantity'];
  /** Held back for validation: never trained on, always in the promotion gate's set. */
  holdout: boolean;
  moderation: ModerationEntry[];
  /** The piece's distributions, so the pool's drift needs no file reads. */
  histograms: Histograms;
}

export interface ContributionInput {
  uploader: string;
  platform: string;
  server?: string;
  label?: string;
  /** The name the user's file had (display only; never a path). */
  filename: string;
}

export type RefusalReason = 'unreadable' | 'unacceptable' | 'duplicate' | 'limit' | 'label';

export type ContributionOutcome =
  | { status: 'accepted' | 'flagged'; record: ContributionRecord; message: string }
  | { status: 'refused'; reason: RefusalReason; message: string; duplicateOf?: string };

export interface ContributionSettings {
  dataDir: string;
  contributionsPerDay: number;
  /** Files one user may offer in a rolling hour, accepted or refused (default DEFAULT_ATTEMPTS_PER_HOUR). */
  contributionAttemptsPerHour?: number;
  holdoutFraction: number;
  driftThreshold: number;
}

/** A moderator action that cannot be done (unknown id, wrong state): one line for the user. */
export class ContributionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ContributionError';
  }
}

const ID_PATTERN = /^c[0-9a-z]{8,24}$/;
const DAY_MS = 24 * 60 * 60 * 1000;
/** A hash claim with no record is taken over after this long (its writer crashed). */
const ORPHAN_CLAIM_MS = 60_000;
const MAX_LABEL = 40;
const HOUR_MS = 60 * 60 * 1000;
/** NOCTURNE_CONTRIBUTION_ATTEMPTS_PER_HOUR's default. */
export const DEFAULT_ATTEMPTS_PER_HOUR = 20;
/** Members remembered before the attempt windows of those idle for an hour are swept. */
const ATTEMPT_SWEEP_SIZE = 1000;

/** What takeAttempts allows: how many of the offered files may be fetched and checked now. */
export interface AttemptGrant {
  granted: number;
  /** The hourly limit. */
  limit: number;
  /** When granted is short of what was asked: seconds until the next attempt is free. */
  retryAfterSeconds: number;
}

interface HashClaim {
  id: string;
  at: number;
}

export function newContributionId(now = Date.now()): string {
  return `c${now.toString(36)}${randomBytes(4).toString('hex')}`;
}

export function isContributionId(text: string): boolean {
  return ID_PATTERN.test(text);
}

/** A file name safe to show: no directories, no control characters, at most 100 characters. */
export function displayName(filename: string): string {
  const base = filename.split(/[\\/]/).pop() ?? '';
  const clean = base.replace(/[^\p{L}\p{N} ._()'+,-]/gu, '_').replace(/^\.+/, '').slice(0, 100);
  return clean || 'upload.mid';
}

/**
 * The label to store: undefined for none or "any"; the known composer's spelling when it matches
 * one case-insensitively; else the cleaned text. Returns an error line for an unusable label.
 */
export function normaliseLabel(label: string | undefined, knownComposers: readonly string[]): { label?: string; error?: string } {
  const text = (label ?? '').trim().replace(/\s+/g, ' ');
  if (text === '' || text.toLowerCase() === 'any') return {};
  if (text.length > MAX_LABEL || !/^[\p{L}\p{N}][\p{L}\p{N} .'_-]*$/u.test(text)) {
    return { error: `label must be a composer or style name of up to ${MAX_LABEL} letters, digits, spaces, dots, apostrophes or dashes, got ${JSON.stringify(text.slice(0, 60))}` };
  }
  const known = knownComposers.find((c) => c.toLowerCase() === text.toLowerCase());
  return { label: known ?? text };
}

/** Deterministic per id, so a contribution's role (training or validation) never changes. */
export function isHeldBack(id: string, fraction: number): boolean {
  if (fraction <= 0) return false;
  return createHash('sha256').update(`holdout:${id}`).digest().readUInt32BE(0) / 2 ** 32 < fraction;
}

export class Contributions {
  private chain: Promise<unknown> = Promise.resolve();
  /** Per user (platform:uploader): times of the files offered in the last hour, oldest first. */
  private readonly attempts = new Map<string, number[]>();

  constructor(
    private readonly store: CommunityStore,
    private readonly profile: CorpusProfile,
    private readonly settings: ContributionSettings,
    private readonly knownComposers: () => readonly string[] = () => [],
  ) {}

  get folder(): string {
    return join(this.settings.dataDir, 'contributions');
  }

  /** Where a contribution's MIDI file is (the id is validated first). */
  filePath(id: string): string {
    if (!isContributionId(id)) throw new ContributionError(`${JSON.stringify(id.slice(0, 40))} is not a contribution id (ids are "c" followed by lower-case letters and digits)`);
    return join(this.folder, `${id}.mid`);
  }

  /**
   * Takes up to `files` attempts from the user's hourly allowance (contributionAttemptsPerHour)
   * and says how many of the offered files may be downloaded and checked now. Every file counts,
   * whatever its verdict: a refused one (not MIDI, too big, a duplicate, a host not allowed, the
   * daily limit) costs a download and a check just as an accepted one does, so refusals cannot be
   * repeated without end. Files beyond the allowance must be refused without a download.
   *
   * Kept in this process's memory, like the job queue's per-minute limits: each bot process
   * sharing a store counts on its own, and a restart starts afresh.
   */
  takeAttempts(who: { uploader: string; platform: string }, files: number, now = Date.now()): AttemptGrant {
    const limit = this.settings.contributionAttemptsPerHour ?? DEFAULT_ATTEMPTS_PER_HOUR;
    if (this.attempts.size > ATTEMPT_SWEEP_SIZE) {
      for (const [key, times] of this.attempts) if (times.every((t) => now - t >= HOUR_MS)) this.attempts.delete(key);
    }
    const key = `${who.platform}:${who.uploader}`;
    const times = (this.attempts.get(key) ?? []).filter((t) => now - t < HOUR_MS);
    const granted = Math.max(0, Math.min(files, limit - times.length));
    for (let i = 0; i < granted; i++) times.push(now);
    if (times.length) this.attempts.set(key, times);
    else this.attempts.delete(key);
    const retryAfterSeconds = granted < files ? Math.max(1, Math.ceil((times[times.length - limit] + HOUR_MS - now) / 1000)) : 0;
    return { granted, limit, retryAfterSeconds };
  }

  /** Checks and stores one uploaded file. Never throws for bad input: refusals are outcomes. */
  contribute(bytes: Uint8Array, input: ContributionInput, now = new Date()): Promise<ContributionOutcome> {
    return this.serialised(() => this.contributeNow(bytes, input, now));
  }

  private async contributeNow(bytes: Uint8Array, input: ContributionInput, now: Date): Promise<ContributionOutcome> {
    if (!input.uploader || !input.platform) throw new Error('contribute: uploader and platform are required');
    const filename = displayName(input.filename);
    const label = normaliseLabel(input.label, this.knownComposers());
    if (label.error) return { status: 'refused', reason: 'label', message: `${filename}: ${label.error}` };

    const recent = (await this.list({ uploader: input.uploader, platform: input.platform })).filter((r) => now.getTime() - Date.parse(r.time) < DAY_MS);
    if (recent.length >= this.settings.contributionsPerDay) {
      const oldest = Math.min(...recent.map((r) => Date.parse(r.time)));
      const hours = Math.max(1, Math.ceil((oldest + DAY_MS - now.getTime()) / 3_600_000));
      return { status: 'refused', reason: 'limit', message: `${filename}: you have reached the limit of ${this.settings.contributionsPerDay} contributions per day; try again in about ${hours} h` };
    }

    const verdict = checkMidiBytes(bytes, filename);
    if (verdict.status !== 'ok') return { status: 'refused', reason: verdict.status, message: `${filename}: ${verdict.reason ?? verdict.status}` };
    const piece = parseMidi(bytes, filename);
    const tokens = tokenize(piece.notes);
    const identity = musicIdentity(tokens);

    const corpusMusic = this.profile.musicHashes[identity.music];
    if (corpusMusic) return { status: 'refused', reason: 'duplicate', duplicateOf: corpusMusic, message: `${filename}: duplicate: the same music as the training piece ${corpusMusic}` };
    const corpusShape = this.profile.shapeHashes[identity.shape];
    if (corpusShape) return { status: 'refused', reason: 'duplicate', duplicateOf: corpusShape, message: `${filename}: duplicate: the training piece ${corpusShape} in another key or with other dynamics` };

    const id = newContributionId(now.getTime());
    const musicClaim = await this.claim(`music:${identity.music}`, id, now.getTime());
    if (musicClaim) return this.duplicateOfContribution(filename, musicClaim, true);
    const shapeClaim = await this.claim(`shape:${identity.shape}`, id, now.getTime());
    if (shapeClaim) {
      await this.releaseClaim(`music:${identity.music}`, id);
      return this.duplicateOfContribution(filename, shapeClaim, false);
    }

    const histograms = histogramsOf([tokens]);
    const similarity = similarityTo(this.profile.histograms, histograms);
    const status: ContributionStatus = similarity.overall >= this.settings.driftThreshold ? 'accepted' : 'flagged';
    const record: ContributionRecord = {
      id,
      uploader: input.uploader,
      platform: input.platform,
      server: input.server ?? '',
      label: label.label,
      filename,
      hash: identity.music,
      shapeHash: identity.shape,
      size: bytes.length,
      notes: tokens.length,
      durationSeconds: Math.round(piece.durationSeconds * 10) / 10,
      tempoBpm: Math.round(piece.tempoBpm),
      time: now.toISOString(),
      status,
      similarity: similarity.overall,
      drift: similarity.perQuantity,
      holdout: isHeldBack(id, this.settings.holdoutFraction),
      moderation: [],
      histograms,
    };
    try {
      await mkdir(this.folder, { recursive: true });
      // The complete file is in place before the record that makes it count.
      await writeFileAtomic(this.filePath(id), bytes);
      await this.store.set(`contribution:${id}`, record);
    } catch (e) {
      await unlink(this.filePath(id)).catch(() => undefined);
      await this.releaseClaim(`music:${identity.music}`, id);
      await this.releaseClaim(`shape:${identity.shape}`, id);
      throw e;
    }
    const what = `${filename}: ${tokens.length} notes, similarity to the training corpus ${formatSimilarity(similarity)}`;
    return status === 'accepted'
      ? { status, record, message: `accepted as ${id}${record.label ? ` (${record.label})` : ''}. ${what}` }
      : { status, record, message: `received as ${id} and flagged for a moderator: its similarity ${similarity.overall.toFixed(2)} is below ${this.settings.driftThreshold}. ${what}` };
  }

  private duplicateOfContribution(filename: string, holder: ContributionRecord, sameMusic: boolean): ContributionOutcome {
    const which = `contribution ${holder.id} (${holder.filename}${holder.status === 'rejected' ? ', which a moderator rejected' : ''})`;
    const what = sameMusic ? `the same music as ${which}` : `${which} in another key or with other dynamics`;
    return { status: 'refused', reason: 'duplicate', duplicateOf: holder.id, message: `${filename}: duplicate: ${what}` };
  }

  /** Claims `key` for `id`; returns the record of the contribution that already holds it, if any. */
  private async claim(key: string, id: string, now: number): Promise<ContributionRecord | undefined> {
    const mine: HashClaim = { id, at: now };
    for (let attempt = 0; attempt < 3; attempt++) {
      if (await this.store.insertIfAbsent(key, mine)) return undefined;
      const held = await this.store.getRaw<HashClaim>(key);
      if (!held) continue;
      const holder = await this.get(held.value.id);
      if (holder) return holder;
      // A claim without a record: its writer crashed (or is still writing, hence the age check).
      if (now - held.value.at < ORPHAN_CLAIM_MS) throw new ContributionError('the same music is being contributed right now; try again in a minute');
      if (await this.store.compareAndSet(key, held.text, mine)) return undefined;
    }
    throw new ContributionError('could not record the music hash (the store is busy); try again');
  }

  private async releaseClaim(key: string, id: string): Promise<void> {
    const held = await this.store.getRaw<HashClaim>(key).catch(() => undefined);
    if (held?.value.id === id) await this.store.compareAndDelete(key, held.text).catch(() => undefined);
  }

  async get(id: string): Promise<ContributionRecord | undefined> {
    if (!isContributionId(id)) return undefined;
    return this.store.get<ContributionRecord>(`contribution:${id}`);
  }

  /** Contributions, newest first, optionally filtered. */
  async list(filter: { status?: ContributionStatus; uploader?: string; platform?: string; limit?: number } = {}): Promise<ContributionRecord[]> {
    const all = (await this.store.list<ContributionRecord>('contribution:')).map((e) => e.value);
    const kept = all.filter((r) => (!filter.status || r.status === filter.status) && (!filter.uploader || r.uploader === filter.uploader) && (!filter.platform || r.platform === filter.platform));
    kept.sort((a, b) => b.time.localeCompare(a.time) || b.id.localeCompare(a.id));
    return filter.limit ? kept.slice(0, filter.limit) : kept;
  }

  /** Moderator: the contribution is no longer used (kept on disk, so it can be restored). */
  reject(id: string, by: string, reason?: string, now = new Date()): Promise<ContributionRecord> {
    return this.serialised(() => this.moderate(id, 'reject', by, reason, now));
  }

  /** Moderator: a rejected or flagged contribution is accepted (the moderator's word overrides drift). */
  restore(id: string, by: string, reason?: string, now = new Date()): Promise<ContributionRecord> {
    return this.serialised(() => this.moderate(id, 'restore', by, reason, now));
  }

  private async moderate(id: string, action: ModerationEntry['action'], by: string, reason: string | undefined, now: Date): Promise<ContributionRecord> {
    this.filePath(id); // validates the id
    const record = await this.get(id);
    if (!record) throw new ContributionError(`no contribution ${id}`);
    const next: ContributionStatus = action === 'reject' ? 'rejected' : 'accepted';
    if (record.status === next) throw new ContributionError(`contribution ${id} is already ${next}`);
    if (next === 'accepted' && !existsSync(this.filePath(id))) throw new ContributionError(`contribution ${id} cannot be restored: its file is missing`);
    const updated: ContributionRecord = { ...record, status: next, moderation: [...record.moderation, { action, by, at: now.toISOString(), ...(reason ? { reason } : {}) }] };
    await this.store.set(`contribution:${id}`, updated);
    return updated;
  }

  /** Accepted contributions split into training and held-back (validation) ones. */
  async usable(): Promise<{ training: ContributionRecord[]; heldBack: ContributionRecord[] }> {
    const accepted = (await this.list({ status: 'accepted' })).reverse();
    return { training: accepted.filter((r) => !r.holdout), heldBack: accepted.filter((r) => r.holdout) };
  }

  /**
   * Deletes what a crash can leave in the contributions folder: temporary files and MIDI files
   * without a record, once they are older than `minAgeMs` (younger ones may be mid-write in
   * another process). Returns the names removed.
   */
  async recover(minAgeMs = 10 * 60_000, now = Date.now()): Promise<string[]> {
    if (!existsSync(this.folder)) return [];
    const removed: string[] = [];
    for (const name of await readdir(this.folder)) {
      const path = join(this.folder, name);
      const age = now - (await stat(path)).mtimeMs;
      if (age < minAgeMs) continue;
      const id = name.replace(/\.mid$/, '');
      const orphan = name.includes('.tmp-') || !name.endsWith('.mid') || !isContributionId(id) || !(await this.get(id));
      if (orphan) {
        await unlink(path);
        removed.push(name);
      }
    }
    return removed;
  }

  private serialised<T>(work: () => Promise<T>): Promise<T> {
    const next = this.chain.then(work, work);
    this.chain = next.catch(() => undefined);
    return next;
  }
}
