/**
 * Unlikelihood training against copy loops (sequence-level unlikelihood, Welleck et al. 2019).
 * Teacher forcing only ever shows the model real music, so it never learns what to do once its
 * own notes have started to circle: at sampling it copies itself round a figure far longer than
 * any real piece does (stage 6: longest loop 30.5 notes per 250-note excerpt, real 15.6). Here
 * the model writes pieces as sampling does (the ring decoder, the spec's decoding), every note
 * that carries a loop past `limit` notes is marked, and a training step lowers the probability
 * of those pitches there. The likelihood steps on real pieces go on between rounds, so the real
 * figures that loop (an Alberti bass, a trill) stay likely.
 */
import { EXCERPT_NOTES, fitRealismCritic, realismLogOdds, type RealismCritic } from '../../../eval/realism.ts';
import type { ModelDecoding } from '../folder.ts';
import type { Hyperparameters, LoopHazardShares } from '../network.ts';
import { generateTokens, type HeadName, type SampleRequest } from '../sampling.ts';
import type { Weights } from '../../layers.ts';
import type { Random } from '../../random.ts';
import { longestLoop, loopContinuations, NEAR_RETURN_SHARE, loopHazardProfile, loopHazardRows, loopProfile, returnsByDistance, type LoopHazardProfile } from '../../../tokens/loops.ts';
import type { NoteToken } from '../../../tokens/tokenize.ts';
import type { StreamPiece } from './stream.ts';

export interface UnlikelihoodOptions {
  /** Weight of an unlikelihood step's loss (the likelihood steps' weight is 1). */
  weight: number;
  /** Likelihood steps between two rounds. */
  every: number;
  /** Pieces the model writes per round. */
  pieces: number;
  /** Notes per piece. */
  notes: number;
  /** A note that carries a loop past this many notes is marked (loopContinuations). */
  limit: number;
  /**
   * Weight of the return bonus (0 or absent: none): a likelihood step on each note of the
   * model's own pieces that lies in an 8-note figure brought back from further than a loop
   * reaches (distantReturns), so that lowering the loops does not lower motifs coming back.
   */
  returnBonus?: number;
  /**
   * Weight of the loop hazard step (0 or absent: none): on the same pieces, the model's mean
   * probability of carrying a loop on, per band of loop length, is pulled toward the real
   * pieces' share (loopHazardLoss), instead of every continuation past `limit` being pushed down.
   */
  hazard?: number;
  /** The heads a loop hazard step pulls (default both: the onset gap, then the pitch). */
  hazardHeads?: readonly LoopHazardHead[];
  /**
   * Pull each composer's own pieces toward that composer's real shares (composerHazardShares)
   * instead of every piece toward the whole corpus's: a Chopin nocturne carries a 4-note figure
   * on far less often than a Beethoven sonata, and one shared target flattens that difference.
   */
  hazardByComposer?: boolean;
  /**
   * With `hazardHeads` ['pitch']: pull the pitch head toward the share that makes a band's loops
   * carry on in gap and pitch together as often as real music's (jointShare), instead of toward
   * the real pitch share alone. A pitch-only pull left the gap head's excess in place (stage 7's
   * own pieces carry a 2–3-note loop's gap on 0.77 of the time, real music 0.64), so loops still
   * ran long; pulling the gap head itself loosened the rhythm.
   */
  hazardJoint?: boolean;
  /**
   * The loop hazard also pulls the carrying on of figures returning from afar (loopHazardRows
   * with `returns`): the model's own pieces drop a return after a few notes where real music
   * plays it on (stage 8: 55 % against 81 % of 3+-step matches go on for one more step).
   */
  hazardReturns?: boolean;
  /**
   * Weight of the timing pull (0 or absent: none): on the same pieces, the mean distribution the
   * gap and duration heads give, over the TIMING_BIN_EDGES bins, is pulled toward the real
   * pieces' (timingPull). Some runs' own pieces drift into block chords a beat or more apart (one
   * run from the three-seed soup: 10 % of gaps a beat or longer, real pieces 4 %) although the
   * model is calibrated when it reads real music.
   */
  timingPull?: number;
  /**
   * Weight of the own-best step (0 or absent: none): the round's pieces are written in groups of
   * `ownBestOf` (default pairs) for one composer each, and the best piece of each group (ownPieceScore: more of its notes in
   * figures that return from afar, fewer in figures repeated on the spot beyond real music's share) takes a likelihood step on
   * `ownBestHeads` (default every head). Teacher forcing only shows the model real contexts; this rewards what it does in
   * its own, where it decides whether a figure will come back (rejection-sampling fine-tuning).
   */
  ownBest?: number;
  /** Pieces compared for each one kept by an own-best step (default 2: the better of a pair). */
  ownBestOf?: number;
  /**
   * Own-best candidates written apart, at the model's raw distribution (temperature 1, top-p 1, no
   * guidance) instead of the shipped decoding: likelihood steps on pieces written sharper than the
   * model narrow it toward its favourite choices; on its own raw pieces only the choice pulls.
   */
  ownBestRaw?: boolean;
  /** The heads an own-best step trains (default all four): returns are pitch figures, so `['pitch']` leaves the rhythm, duration and velocity of raw pieces untaught. */
  ownBestHeads?: readonly HeadName[];
  /**
   * What picks the best of a group (default 'returns': ownPieceScore). 'realism': the piece that
   * looks most real to a realism critic (realismLogOdds), fitted at the start of each epoch on the
   * training pieces against pieces the model then writes as the candidates are written, so the
   * choice weighs every realism feature at once (loops, returns, texture, rhythm) as the
   * evaluation's classifier does, instead of returns alone.
   */
  ownBestBy?: OwnBestScore;
}

export const OWN_BEST_SCORES = ['returns', 'realism'] as const;
export type OwnBestScore = (typeof OWN_BEST_SCORES)[number];

export const LOOP_HAZARD_HEADS = ['dt', 'pitch'] as const;
export type LoopHazardHead = (typeof LOOP_HAZARD_HEADS)[number];

/**
 * Defaults: a round after every 8 likelihood steps, 8 pieces of 512 notes (4 chunks of the
 * default window), loops marked past 16 notes (a bar of sixteenths; real 250-note excerpts have
 * a median longest loop of 10 and a mean of 15.6).
 */
export const DEFAULT_UNLIKELIHOOD: Omit<UnlikelihoodOptions, 'weight'> = { every: 8, pieces: 8, notes: 512, limit: 16 };

/** What one round's pieces looked like: the loops the model writes now. */
export interface SelfSampleStats {
  pieces: number;
  notes: number;
  marked: number;
  /** Notes that lie in a figure brought back from afar (distantReturns; counted with or without a return bonus). */
  returned: number;
  /** Sum over pieces of each piece's mean, over its 250-note excerpts, of the longest loop (the realism measure's unit). */
  longestLoopSum: number;
  /** Notes with a loop of 4 or more notes behind them, and those of them that carried it on (loopProfile). */
  loopBehind: number;
  loopCarried: number;
  /** Notes of the pieces in figures repeated on the spot (nearReturns). */
  near: number;
  /** With an own-best step: the pieces kept, their notes, and of those the notes in returns, past the loop limit and in near repeats. */
  kept: number;
  keptNotes: number;
  keptReturned: number;
  keptMarked: number;
  keptNear: number;
  /** Sum of the own-best scores (ownPieceScore, or the critic's log-odds) of the candidates, and of those kept. */
  scoreSum: number;
  keptScoreSum: number;
}

/**
 * How much of a piece of the model's own music is worth learning from: the share of its `notes`
 * that lie in a figure brought back from afar (`returned`, counted by distantReturns) less the
 * share in figures repeated on the spot (`near`, by nearReturns) beyond real music's
 * (NEAR_RETURN_SHARE). Real music has about a third of its notes in returns and a tenth in near
 * repeats, the two slightly against each other (correlation −0.1 to −0.2 over pieces); stage 8's
 * own pieces have 14 % and 26–29 %, the two together (+0.6 to +0.7), so a score on returns alone
 * keeps pieces that repeat everything.
 */
export function ownPieceScore(returned: number, near: number, notes: number): number {
  return (returned - Math.max(0, near - NEAR_RETURN_SHARE * notes)) / Math.max(1, notes);
}

/** A piece's loop continuations past `limit`, returns from afar and near repeats, their counts, and its ownPieceScore. */
function countOwnPiece(tokens: readonly NoteToken[], limit: number): { marks: Uint8Array; returns: Uint8Array; marked: number; returned: number; near: number; score: number } {
  const marks = loopContinuations(tokens, limit);
  const { far: returns, near: nearMarks } = returnsByDistance(tokens);
  const sum = (a: Uint8Array) => a.reduce((s, m) => s + m, 0);
  const marked = sum(marks);
  const returned = sum(returns);
  const near = sum(nearMarks);
  return { marks, returns, marked, returned, near, score: ownPieceScore(returned, near, tokens.length) };
}

/** Index of the best-scoring piece of each group of `size` (0..size-1, size..2·size-1, …; the first where they tie; a short last group counts too). */
export function bestOfGroups(scores: readonly number[], size = 2): number[] {
  if (!Number.isInteger(size) || size < 1) throw new Error(`bestOfGroups: size must be a whole number ≥ 1, got ${size}`);
  const best: number[] = [];
  for (let i = 0; i < scores.length; i += size) {
    let k = i;
    for (let j = i + 1; j < Math.min(scores.length, i + size); j++) if (scores[j] > scores[k]) k = j;
    best.push(k);
  }
  return best;
}

/**
 * Mean over a piece's consecutive 250-note excerpts (the realism measure's, remainder dropped;
 * a shorter piece is one excerpt) of each excerpt's longest loop (longestLoop).
 */
export function excerptLongestLoop(tokens: readonly NoteToken[], excerpt = 250): number {
  const n = Math.max(1, Math.floor(tokens.length / excerpt));
  let sum = 0;
  for (let e = 0; e < n; e++) sum += longestLoop(tokens.slice(e * excerpt, (e + 1) * excerpt));
  return sum / n;
}

/**
 * Pieces the model writes as it now is, with the decoding it ships with, for composers drawn as
 * the training pieces are (`composerPool`, one name per training piece), each with its loop
 * continuations marked (and with a return bonus, its distant returns). No key is requested
 * (the stream reads "any key" for a piece without key labels, as sampling did).
 */
export function sampleMarkedPieces(weights: Weights, h: Hyperparameters, composerIndex: Map<string, number>, composerPool: readonly string[], decoding: ModelDecoding | undefined, o: UnlikelihoodOptions, rng: Random, critic?: RealismCritic): { pieces: StreamPiece[]; stats: SelfSampleStats; best: StreamPiece[] } {
  if (composerPool.length === 0) throw new Error('sampleMarkedPieces: no composers to write for');
  if (o.ownBest && o.ownBestBy === 'realism' && !critic) throw new Error('sampleMarkedPieces: own-best by realism needs a realism critic');
  // An own-best step compares a group of pieces for one composer, so that it keeps no composer over another.
  const group = o.ownBest ? (o.ownBestOf ?? 2) : 1;
  const names: string[] = [];
  for (let k = 0; k < o.pieces; k++) names.push(k % group > 0 ? names[k - 1] : composerPool[Math.floor(rng.next() * composerPool.length)]);
  const requests = decodedRequests(names, composerIndex, o.notes, decoding, rng);
  const written = generateTokens(weights, h, composerIndex.size, requests);
  const stats: SelfSampleStats = { pieces: written.length, notes: 0, marked: 0, returned: 0, longestLoopSum: 0, loopBehind: 0, loopCarried: 0, near: 0, kept: 0, keptNotes: 0, keptReturned: 0, keptMarked: 0, keptNear: 0, scoreSum: 0, keptScoreSum: 0 };
  for (const band of loopProfile(written).goesOn.filter((b) => b.from >= 4)) {
    stats.loopBehind += band.notes;
    stats.loopCarried += Math.round(band.share * band.notes);
  }
  const counted = written.map((tokens) => countOwnPiece(tokens, o.limit));
  const pieces = written.map((tokens, k) => {
    const { marks, returns, marked, returned, near } = counted[k];
    stats.notes += tokens.length;
    stats.marked += marked;
    stats.returned += returned;
    stats.near += near;
    stats.longestLoopSum += excerptLongestLoop(tokens);
    return { composer: names[k], tokens, marks, ...(o.returnBonus ? { returns } : {}), ...(o.hazard ? { hazard: loopHazardRows(tokens, { returns: o.hazardReturns }) } : {}) };
  });
  // The candidates: the round's pieces, or with ownBestRaw pieces of their own for the same composers at the raw distribution.
  const candidates = o.ownBest && o.ownBestRaw ? generateTokens(weights, h, composerIndex.size, ownBestRequests(requests, rng)) : written;
  const scored = candidates === written ? counted : candidates.map((tokens) => countOwnPiece(tokens, o.limit));
  // The best of each group, read as a real piece is (no marks, no hazard rows).
  const scores = o.ownBest && o.ownBestBy === 'realism' && critic ? candidates.map((tokens) => realismLogOdds(critic, tokens)) : scored.map((c) => c.score);
  const kept = o.ownBest ? bestOfGroups(scores, group) : [];
  if (o.ownBest) stats.scoreSum = scores.reduce((sum, v) => sum + v, 0);
  for (const k of kept) {
    stats.keptScoreSum += scores[k];
    stats.kept++;
    stats.keptNotes += candidates[k].length;
    stats.keptReturned += scored[k].returned;
    stats.keptMarked += scored[k].marked;
    stats.keptNear += scored[k].near;
  }
  const best = kept.map((k) => ({ composer: names[k], tokens: candidates[k] }));
  return { pieces, stats, best };
}

/** Pieces an own-best critic is fitted against (OWN_BEST_CRITIC_PIECES of 512 notes: 96 excerpts of 250). */
export const OWN_BEST_CRITIC_PIECES = 48;

/**
 * The realism critic an own-best step by realism scores its candidates with: the realism
 * classifier fitted on every 250-note excerpt (or, for shorter own pieces, excerpts of their length) of the `real` pieces (the training pieces) against
 * `count` pieces the model writes now as the candidates are written (the shipped decoding, or
 * with ownBestRaw the raw distribution), for composers drawn as the rounds draw them.
 */
export function fitOwnBestCritic(weights: Weights, h: Hyperparameters, composerIndex: Map<string, number>, composerPool: readonly string[], decoding: ModelDecoding | undefined, o: UnlikelihoodOptions, rng: Random, real: readonly (readonly NoteToken[])[], count = OWN_BEST_CRITIC_PIECES): RealismCritic {
  if (composerPool.length === 0) throw new Error('fitOwnBestCritic: no composers to write for');
  const names = Array.from({ length: count }, () => composerPool[Math.floor(rng.next() * composerPool.length)]);
  const requests = decodedRequests(names, composerIndex, o.notes, decoding, rng);
  const own = generateTokens(weights, h, composerIndex.size, o.ownBestRaw ? ownBestRequests(requests, rng) : requests);
  return fitRealismCritic(real, own, Math.min(EXCERPT_NOTES, o.notes));
}

/** One request per composer name for `notes` notes at `decoding` (the model's shipped one), each with a fresh seed from `rng`; an unknown name asks for "any composer". */
function decodedRequests(names: readonly string[], composerIndex: Map<string, number>, notes: number, decoding: ModelDecoding | undefined, rng: Random): SampleRequest[] {
  return names.map((name) => ({
    composer: composerIndex.get(name) ?? composerIndex.size,
    notes,
    temperature: decoding?.temperature ?? 1,
    topP: decoding?.topP ?? 1,
    heads: decoding?.heads,
    keyGuidance: decoding?.keyGuidance,
    composerGuidance: decoding?.composerGuidance,
    randomSeed: Math.floor(rng.next() * 2 ** 31),
  }));
}

/** The raw-distribution twins of a round's requests (ownBestRaw): the same composers and lengths at temperature 1, top-p 1, no guidance, fresh seeds. */
export function ownBestRequests(requests: readonly SampleRequest[], rng: Random): SampleRequest[] {
  return requests.map((r) => ({ composer: r.composer, notes: r.notes, temperature: 1, topP: 1, randomSeed: Math.floor(rng.next() * 2 ** 31) }));
}

/**
 * Per composer, the shares a loop hazard step pulls `heads` toward: slot k × bands + b holds
 * composer k's share in band b (composerIndex), slot `composers` the whole corpus's (a piece
 * written for "any composer"). A composer's share is shrunk toward the corpus's by `prior`
 * pseudo-rows, so a composer with few notes in a band is pulled toward the common share. With
 * `returns`, each group has the return bands after the loop bands (loopHazardProfile).
 */
export function composerHazardShares(pieces: readonly { composer: string; tokens: readonly NoteToken[] }[], composerIndex: Map<string, number>, composers: number, heads: readonly LoopHazardHead[] = LOOP_HAZARD_HEADS, prior = 256, o: { returns?: boolean; joint?: boolean } = {}): LoopHazardShares {
  const all = loopHazardProfile(pieces.map((p) => p.tokens), o).bands;
  const common = all.map((b) => ({ ...b, rows: 0, pitchRows: 0 })); // no rows of its own: the corpus's shares
  const groups: LoopHazardProfile['bands'][] = [];
  for (let k = 0; k < composers; k++) {
    const own = pieces.filter((p) => composerIndex.get(p.composer) === k).map((p) => p.tokens);
    groups.push(own.length > 0 ? loopHazardProfile(own, o).bands : common);
  }
  groups.push(common); // "any composer"
  const shrunk = (n: number, share: number, corpus: number) => (n + prior > 0 ? (n * share + prior * corpus) / (n + prior) : corpus);
  const bands = groups.flatMap((g) => g.map((b, i) => ({ ...b, dtShare: shrunk(b.rows, b.dtShare, all[i].dtShare), pitchShare: shrunk(b.pitchRows, b.pitchShare, all[i].pitchShare) })));
  return hazardShares({ bands }, heads, o);
}

/**
 * The shares a loop hazard step pulls `heads` toward, from the real pieces' profile; with `joint`
 * (the pitch head alone), the share of loops carried on in gap and pitch alike (jointShare).
 */
export function hazardShares(profile: LoopHazardProfile, heads: readonly LoopHazardHead[] = LOOP_HAZARD_HEADS, o: { joint?: boolean } = {}): LoopHazardShares {
  if (o.joint && (heads.includes('dt') || !heads.includes('pitch'))) throw new Error('hazardShares: the joint share is pulled through the pitch head alone (heads: pitch)');
  if (o.joint) return { jointShare: profile.bands.map((b) => b.dtShare * b.pitchShare) };
  return {
    ...(heads.includes('dt') ? { dtShare: profile.bands.map((b) => b.dtShare) } : {}),
    ...(heads.includes('pitch') ? { pitchShare: profile.bands.map((b) => b.pitchShare) } : {}),
  };
}
