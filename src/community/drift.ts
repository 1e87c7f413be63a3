/**
 * The drift monitor: similarity to the training corpus of each contribution (stored with it), of
 * the accepted contribution pool, and of recent generated outputs; and `report()` with the
 * current numbers and a PNG chart of them over time.
 *
 * Generated outputs are recorded by the caller after each composed piece (recordOutput): the
 * sample keeps only the piece's histograms, never its notes, and only about the latest
 * MAX_OUTPUT_SAMPLES are kept.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseMidi } from '../midi/read.ts';
import { plotSeries, type Series } from '../render/curve.ts';
import { tokenize, type NoteToken } from '../tokens/tokenize.ts';
import type { ContributionRecord, Contributions } from './contributions.ts';
import type { CorpusProfile } from './corpusProfile.ts';
import { formatSimilarity, histogramsOf, mergeHistograms, noteCount, similarityTo, type Histograms, type Similarity } from './distributions.ts';
import type { CommunityStore } from './store.ts';

export const MAX_OUTPUT_SAMPLES = 1000;
const PRUNE_EVERY = 50;

export interface OutputSample {
  time: string;
  modelVersion: string;
  notes: number;
  similarity: number;
  histograms: Histograms;
}

export interface DriftSettings {
  dataDir: string;
  driftThreshold: number;
  driftRecentOutputs: number;
}

export interface PoolDrift extends Similarity {
  pieces: number;
  notes: number;
}

export interface DriftReport {
  threshold: number;
  reference: { source: string; pieces: number; notes: number };
  contributions: { total: number; accepted: number; flagged: number; rejected: number; latest: Pick<ContributionRecord, 'id' | 'time' | 'similarity' | 'status' | 'filename'>[] };
  /** The accepted contributions pooled, or undefined when there are none. */
  pool?: PoolDrift;
  /** The latest `driftRecentOutputs` generated outputs pooled, or undefined when none were recorded. */
  outputs?: PoolDrift & { modelVersions: string[] };
  /** The chart, when asked for and when there is anything to plot. */
  chartPath?: string;
  /** The numbers as lines for a chat message. */
  summary: string[];
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

export class DriftMonitor {
  private recordedSincePrune = 0;

  constructor(
    private readonly store: CommunityStore,
    private readonly profile: CorpusProfile,
    private readonly contributions: Contributions,
    private readonly settings: DriftSettings,
  ) {}

  /** Similarity of notes to the training corpus. */
  similarityOf(tokens: readonly NoteToken[]): Similarity {
    return similarityTo(this.profile.histograms, histogramsOf([tokens]));
  }

  /** Records one generated piece (its tokens) for the output drift numbers. */
  async recordOutput(tokens: readonly NoteToken[], modelVersion: string, now = new Date()): Promise<OutputSample> {
    const histograms = histogramsOf([tokens]);
    const sample: OutputSample = { time: now.toISOString(), modelVersion, notes: tokens.length, similarity: similarityTo(this.profile.histograms, histograms).overall, histograms };
    await this.store.set(`output:${sample.time}-${randomBytes(3).toString('hex')}`, sample);
    // Trimming reads every sample, so it is done once per PRUNE_EVERY recordings, not each time.
    if (++this.recordedSincePrune >= PRUNE_EVERY) {
      this.recordedSincePrune = 0;
      const all = await this.store.list<OutputSample>('output:');
      for (const old of all.slice(0, Math.max(0, all.length - MAX_OUTPUT_SAMPLES))) await this.store.delete(old.key);
    }
    return sample;
  }

  /** Records a generated MIDI file (e.g. a ComposeResult's midiPath). */
  async recordOutputFile(midiPath: string, modelVersion: string, now = new Date()): Promise<OutputSample> {
    const piece = parseMidi(await readFile(midiPath), midiPath.split('/').pop() ?? 'piece.mid');
    return this.recordOutput(tokenize(piece.notes), modelVersion, now);
  }

  /** The latest MAX_OUTPUT_SAMPLES recorded outputs, oldest first. */
  async outputSamples(): Promise<OutputSample[]> {
    return (await this.store.list<OutputSample>('output:')).map((e) => e.value).slice(-MAX_OUTPUT_SAMPLES);
  }

  /** The current numbers, and (with `chartPath`) the chart over time. */
  async report(options: { chartPath?: string } = {}): Promise<DriftReport> {
    const records = (await this.contributions.list()).reverse(); // oldest first
    const accepted = records.filter((r) => r.status === 'accepted');
    const outputs = await this.outputSamples();
    const recent = outputs.slice(-this.settings.driftRecentOutputs);
    const pool = this.pooled(accepted.map((r) => r.histograms));
    const outputPool = this.pooled(recent.map((o) => o.histograms));
    const report: DriftReport = {
      threshold: this.settings.driftThreshold,
      reference: { source: this.profile.source, pieces: this.profile.pieces, notes: this.profile.notes },
      contributions: {
        total: records.length,
        accepted: accepted.length,
        flagged: records.filter((r) => r.status === 'flagged').length,
        rejected: records.filter((r) => r.status === 'rejected').length,
        latest: records.slice(-10).reverse().map(({ id, time, similarity, status, filename }) => ({ id, time, similarity, status, filename })),
      },
      pool,
      outputs: outputPool && { ...outputPool, modelVersions: [...new Set(recent.map((o) => o.modelVersion))] },
      summary: [],
    };
    report.summary = this.summaryLines(report);
    if (options.chartPath) report.chartPath = await this.chart(records, outputs, options.chartPath);
    return report;
  }

  private pooled(sets: Histograms[]): PoolDrift | undefined {
    if (sets.length === 0) return undefined;
    const merged = mergeHistograms(sets);
    if (noteCount(merged) === 0) return undefined;
    return { ...similarityTo(this.profile.histograms, merged), pieces: sets.length, notes: noteCount(merged) };
  }

  private summaryLines(r: DriftReport): string[] {
    const c = r.contributions;
    const lines = [
      `reference: ${r.reference.pieces} training pieces (${r.reference.notes} notes); flag threshold ${r.threshold}`,
      `contributions: ${c.total} (${c.accepted} accepted, ${c.flagged} flagged, ${c.rejected} rejected)`,
      r.pool ? `contribution pool: similarity ${formatSimilarity(r.pool)} over ${r.pool.pieces} pieces` : 'contribution pool: no accepted contributions yet',
      r.outputs ? `generated outputs (latest ${r.outputs.pieces}): similarity ${formatSimilarity(r.outputs)}` : 'generated outputs: none recorded yet',
    ];
    for (const l of c.latest.slice(0, 5)) lines.push(`  ${l.id} ${l.time.slice(0, 16).replace('T', ' ')} ${l.status.padEnd(8)} ${l.similarity.toFixed(2)} ${l.filename}`);
    return lines;
  }

  /** The chart: each contribution, the pool as it grew, recent outputs (rolling pool), the threshold. */
  private async chart(records: ContributionRecord[], outputs: OutputSample[], chartPath: string): Promise<string | undefined> {
    const times = [...records.map((r) => Date.parse(r.time)), ...outputs.map((o) => Date.parse(o.time))];
    if (times.length === 0) return undefined;
    const start = Math.min(...times);
    const span = Math.max(...times) - start;
    // The unit that spreads the points over a readable axis (seconds for a burst of uploads).
    const unit = span < 3 * 60_000 ? { ms: 1000, name: 'seconds' } : span < 2 * HOUR_MS ? { ms: 60_000, name: 'minutes' } : span < 3 * DAY_MS ? { ms: HOUR_MS, name: 'hours' } : { ms: DAY_MS, name: 'days' };
    const x = (iso: string) => (Date.parse(iso) - start) / unit.ms;
    const series: Series[] = [];
    series.push({ name: 'each contribution', points: records.map((r) => ({ x: x(r.time), y: r.similarity })), color: '#7f7f7f' });
    const poolPoints: Series['points'] = [];
    const grown: Histograms[] = [];
    for (const r of records) {
      if (r.status !== 'accepted') continue;
      grown.push(r.histograms);
      poolPoints.push({ x: x(r.time), y: similarityTo(this.profile.histograms, mergeHistograms(grown)).overall });
    }
    if (poolPoints.length) series.push({ name: 'accepted pool', points: poolPoints, color: '#1f77b4' });
    if (outputs.length) {
      const n = this.settings.driftRecentOutputs;
      const rolling = outputs.map((o, i) => ({ x: x(o.time), y: similarityTo(this.profile.histograms, mergeHistograms(outputs.slice(Math.max(0, i + 1 - n), i + 1).map((s) => s.histograms))).overall }));
      series.push({ name: `generated outputs (latest ${n} pooled)`, points: rolling, color: '#2ca02c' });
    }
    const end = Math.max(span / unit.ms, 1);
    series.push({ name: `flag threshold ${this.settings.driftThreshold}`, points: [{ x: 0, y: this.settings.driftThreshold }, { x: end, y: this.settings.driftThreshold }], color: '#d62728' });
    const markers = records.filter((r) => r.status === 'flagged').map((r) => ({ x: x(r.time), y: r.similarity, color: '#d62728' }));
    return plotSeries(series, chartPath, {
      title: 'Similarity to the training corpus (1 = same distributions)',
      xLabel: `${unit.name} since ${new Date(start).toISOString().slice(0, 16).replace('T', ' ')} UTC`,
      yLabel: 'similarity',
      yMin: 0,
      yMax: 1,
      markers,
    });
  }

  /** Default chart location in the data folder. */
  defaultChartPath(): string {
    return join(this.settings.dataDir, 'drift.png');
  }
}
