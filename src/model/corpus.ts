/**
 * A corpus is a folder of piano MIDI, one subfolder per composer (the folder name is the
 * label). The dataset's own layout (`<root>/midis/<Composer>/*.mid`) is found by itself.
 * Loose files at the top level get the label "Unknown".
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { readMidiFile, MidiInputError } from '../midi/read.ts';
import { tokenHash, tokenize, type NoteToken } from '../tokens/tokenize.ts';

export interface CorpusEntry {
  composer: string;
  path: string;
}

export interface CorpusPiece {
  composer: string;
  /** Path relative to the corpus root, e.g. "Chopin/chpn_op10_e01.mid". */
  name: string;
  tokens: NoteToken[];
  tempoBpm: number;
}

export const UNKNOWN_COMPOSER = 'Unknown';

const isMidi = (f: string) => /\.(mid|midi)$/i.test(f);

export function corpusRoot(dir: string): string {
  const midis = join(dir, 'midis');
  return existsSync(midis) && statSync(midis).isDirectory() ? midis : dir;
}

/** Lists the MIDI files of a corpus; `composers` (case-insensitive) keeps only those folders. */
export function listCorpus(dir: string, composers?: string[]): CorpusEntry[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`--data ${dir}: not a folder`);
  const root = corpusRoot(dir);
  const wanted = composers?.map((c) => c.toLowerCase());
  const entries: CorpusEntry[] = [];
  for (const name of readdirSync(root).sort()) {
    const full = join(root, name);
    if (statSync(full).isDirectory()) {
      if (wanted && !wanted.includes(name.toLowerCase())) continue;
      for (const f of readdirSync(full).sort()) if (isMidi(f)) entries.push({ composer: name, path: join(full, f) });
    } else if (isMidi(name) && (!wanted || wanted.includes(UNKNOWN_COMPOSER.toLowerCase()))) {
      entries.push({ composer: UNKNOWN_COMPOSER, path: full });
    }
  }
  if (wanted) {
    const found = new Set(entries.map((e) => e.composer.toLowerCase()));
    const missing = wanted.filter((c) => !found.has(c));
    if (missing.length) throw new Error(`--composers: no folder with MIDI files for ${missing.join(', ')} under ${root}`);
  }
  if (entries.length === 0) throw new Error(`${dir}: no .mid files found (expected <Composer>/<piece>.mid)`);
  return entries;
}

/** Reads and tokenises every entry; unreadable or unacceptable files are reported and skipped. */
export async function loadCorpus(entries: CorpusEntry[], warn: (line: string) => void = () => {}): Promise<CorpusPiece[]> {
  const pieces: CorpusPiece[] = [];
  for (const e of entries) {
    try {
      const piece = await readMidiFile(e.path);
      pieces.push({ composer: e.composer, name: `${e.composer}/${basename(e.path)}`, tokens: tokenize(piece.notes), tempoBpm: piece.tempoBpm });
    } catch (err) {
      if (err instanceof MidiInputError) warn(`skipped ${err.message}`);
      else throw err;
    }
  }
  return pieces;
}

/** Hash of the music (token sequences and labels), independent of file order and bytes. */
export function corpusHash(pieces: readonly CorpusPiece[]): string {
  const lines = pieces.map((p) => `${p.composer}\t${tokenHash(p.tokens)}`).sort();
  return createHash('sha256').update(lines.join('\n')).digest('hex').slice(0, 16);
}

function stableFraction(text: string): number {
  return createHash('sha256').update(text).digest().readUInt32BE(0) / 2 ** 32;
}

/**
 * Splits by piece, never by window: per composer, the pieces whose name hashes lowest go to
 * validation (about `fraction` of them; none for composers with fewer than 4 pieces).
 * Deterministic, so a resumed or repeated run validates on the same pieces.
 */
export function splitByPiece<T extends { composer: string; name: string }>(pieces: readonly T[], fraction = 0.1): { train: T[]; validation: T[] } {
  const byComposer = new Map<string, T[]>();
  for (const p of pieces) byComposer.set(p.composer, [...(byComposer.get(p.composer) ?? []), p]);
  const validationNames = new Set<string>();
  for (const list of byComposer.values()) {
    if (list.length < 4) continue;
    const take = Math.max(1, Math.round(list.length * fraction));
    [...list].sort((a, b) => stableFraction(a.name) - stableFraction(b.name)).slice(0, take).forEach((p) => validationNames.add(p.name));
  }
  return { train: pieces.filter((p) => !validationNames.has(p.name)), validation: pieces.filter((p) => validationNames.has(p.name)) };
}

/**
 * The corpus a `train` command reads: the MIDI files of `dataDir` (only the composers in the
 * comma-separated `composers`, when given), split by piece. At least 2 readable pieces.
 */
export async function readTrainingCorpus(dataDir: string, composers: string | undefined, log: (line: string) => void): Promise<{ pieces: CorpusPiece[]; train: CorpusPiece[]; validation: CorpusPiece[] }> {
  const entries = listCorpus(dataDir, composers?.split(',').map((c) => c.trim()).filter(Boolean));
  log(`reading ${entries.length} MIDI files from ${dataDir}`);
  const pieces = await loadCorpus(entries, log);
  if (pieces.length < 2) throw new Error(`${dataDir}: need at least 2 readable pieces, found ${pieces.length}`);
  return { pieces, ...splitByPiece(pieces) };
}

/** Composer → number of pieces and the median tempo, in first-seen order sorted by name. */
export function composerTable(pieces: readonly CorpusPiece[]): { name: string; pieces: number; tempoBpm: number }[] {
  const map = new Map<string, number[]>();
  for (const p of pieces) map.set(p.composer, [...(map.get(p.composer) ?? []), p.tempoBpm]);
  return [...map.entries()]
    .sort((a, b) => a[0].localeCompare(b[0]))
    .map(([name, tempos]) => {
      const sorted = [...tempos].sort((a, b) => a - b);
      return { name, pieces: tempos.length, tempoBpm: Math.round(sorted[Math.floor(sorted.length / 2)]) };
    });
}
