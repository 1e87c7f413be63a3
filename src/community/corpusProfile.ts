/**
 * The training corpus, summarised once and cached as JSON in the data folder: its music hashes
 * (for duplicate refusal) and its pooled distributions (the drift reference). Reading and
 * tokenising the 315 dataset files takes about a second; with the cache, a contribution check
 * touches only its own file. The cache is rebuilt when the corpus changes (a fingerprint of the
 * file names, sizes and modification times).
 *
 * The drift reference is the dataset the shipped model was trained on, fixed over time. It is not
 * re-based on accepted contributions: a reference that follows the pool would let slow drift
 * pass unnoticed, a few accepted pieces at a time.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { relative } from 'node:path';
import { writeFileAtomic } from '../storage/files.ts';
import { corpusRoot, listCorpus, loadCorpus } from '../model/corpus.ts';
import { histogramsOf, noteCount, type Histograms } from './distributions.ts';
import { musicIdentity } from './musicIdentity.ts';

export const CORPUS_PROFILE_FORMAT = 'nocturne-corpus-profile-2';

export interface CorpusProfile {
  format: typeof CORPUS_PROFILE_FORMAT;
  /** The corpus folder it describes. */
  source: string;
  fingerprint: string;
  builtAt: string;
  pieces: number;
  notes: number;
  histograms: Histograms;
  /** music hash → piece name ("Chopin/chpn-p20.mid"). */
  musicHashes: Record<string, string>;
  /** shape hash (key and dynamics ignored) → piece name. */
  shapeHashes: Record<string, string>;
}

/** A hash of the corpus files' names, sizes and modification times. */
export async function corpusFingerprint(datasetDir: string): Promise<string> {
  const entries = listCorpus(datasetDir);
  const root = corpusRoot(datasetDir);
  const lines: string[] = [];
  for (const e of entries) {
    const s = await stat(e.path);
    lines.push(`${relative(root, e.path)}\t${s.size}\t${Math.round(s.mtimeMs)}`);
  }
  return createHash('sha256').update(lines.join('\n')).digest('hex').slice(0, 16);
}

/** Reads and summarises the corpus (no cache). */
export async function buildCorpusProfile(datasetDir: string, log: (line: string) => void = () => {}): Promise<CorpusProfile> {
  const fingerprint = await corpusFingerprint(datasetDir);
  const pieces = await loadCorpus(listCorpus(datasetDir), log);
  if (pieces.length === 0) throw new Error(`${datasetDir}: no readable piano pieces for the drift reference`);
  const musicHashes: Record<string, string> = {};
  const shapeHashes: Record<string, string> = {};
  for (const p of pieces) {
    const id = musicIdentity(p.tokens);
    musicHashes[id.music] ??= p.name;
    shapeHashes[id.shape] ??= p.name;
  }
  const histograms = histogramsOf(pieces.map((p) => p.tokens));
  return { format: CORPUS_PROFILE_FORMAT, source: datasetDir, fingerprint, builtAt: new Date().toISOString(), pieces: pieces.length, notes: noteCount(histograms), histograms, musicHashes, shapeHashes };
}

/** The cached profile when it still matches the corpus, else a fresh one (and the cache rewritten). */
export async function loadCorpusProfile(datasetDir: string, cacheFile: string, log: (line: string) => void = () => {}): Promise<CorpusProfile> {
  const fingerprint = await corpusFingerprint(datasetDir);
  if (existsSync(cacheFile)) {
    try {
      const cached = JSON.parse(await readFile(cacheFile, 'utf8')) as CorpusProfile;
      if (cached.format === CORPUS_PROFILE_FORMAT && cached.fingerprint === fingerprint && cached.source === datasetDir) return cached;
    } catch {
      // An unreadable cache is rebuilt below.
    }
  }
  log(`summarising the training corpus ${datasetDir} for duplicate and drift checks`);
  const profile = await buildCorpusProfile(datasetDir, log);
  await writeFileAtomic(cacheFile, JSON.stringify(profile));
  return profile;
}
