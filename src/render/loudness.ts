/**
 * Loudness normalisation of the rendered samples, in-process on fluidsynth's float output, so
 * that every format (WAV, OGG, MP3, Opus) gets the same loudness from the same numbers:
 *
 * - LoudnessMeter: ITU-R BS.1770-4 / EBU R128 integrated loudness: K-weighting (the standard's
 *   two biquads, recomputed for any sample rate), mean square over 400 ms blocks every 100 ms,
 *   an absolute gate at −70 LUFS and a relative gate 10 LU under the absolute-gated mean.
 * - TruePeakMeter: the peak of the signal reconstructed between the samples, by 4× polyphase
 *   oversampling (a 48-tap Kaiser-windowed sinc, the size BS.1770-4 Annex 2 suggests).
 * - TruePeakLimiter: a gain, then a look-ahead limiter on the same 4× true peak, with the gain
 *   linked across channels. The look-ahead and its smoothing are arranged so that the gain at a
 *   frame is never above what that frame's true peak needs (see process()), so nothing is ever
 *   over the ceiling and nothing clips.
 *
 * Why not ffmpeg's loudnorm: its single pass is a dynamic compressor (it changes the dynamics of
 * the piano); its two-pass "linear" mode only applies a plain gain when the piece's
 * peak-to-loudness ratio already fits (rendered piano has 18..20 dB, −16 LUFS with −1 dBTP
 * allows 15 dB), and falls back to the dynamic mode otherwise; it resamples to 192 kHz and is
 * slower than this; and WAV, the default, would then need ffmpeg too. Measuring here costs one
 * extra read of the float file and keeps WAV free of any dependency beyond fluidsynth.
 */

/** The loudness every format is normalised to, LUFS integrated (the usual streaming level). */
export const TARGET_LUFS = -16;
/** The promise: no format's true peak is above this, in dBTP (dB relative to full scale). */
export const TRUE_PEAK_MAX_DBTP = -1;
/** Where the limiter holds the true peak: under TRUE_PEAK_MAX_DBTP, for the lossy codecs' overshoot. */
export const LIMITER_CEILING_DBTP = -1.5;
/**
 * The limiter's ceiling for OGG, MP3 and Opus: their decoded true peak lands over what went in,
 * by about 0.7..0.9 dB at their usual bitrates and up to 1.4 dB under 96 kbit/s (Vorbis at 64
 * kbit/s mono), so these keep the first encoding under TRUE_PEAK_MAX_DBTP and the file is
 * encoded once (the check after decoding still lowers the ceiling and encodes again if not).
 */
export const LOSSY_CEILING_DBTP = -2.5;
export const LOW_BITRATE_CEILING_DBTP = -3;
export const lossyCeilingDb = (bitrateKbps: number | undefined): number => (bitrateKbps !== undefined && bitrateKbps < 96 ? LOW_BITRATE_CEILING_DBTP : LOSSY_CEILING_DBTP);
/** The most gain normalisation adds (a near-silent render stays near silent rather than noise). */
export const MAX_GAIN_DB = 40;

export const dbToGain = (db: number): number => 10 ** (db / 20);
export const gainToDb = (g: number): number => (g > 0 ? 20 * Math.log10(g) : -Infinity);

// ---------------------------------------------------------------------------------------------
// K-weighting and integrated loudness

interface Biquad {
  b0: number;
  b1: number;
  b2: number;
  a1: number;
  a2: number;
}

/** BS.1770's pre-filter (high shelf) and RLB high-pass at `fs`, from their analogue prototypes (as libebur128). */
function kWeighting(fs: number): [Biquad, Biquad] {
  let f0 = 1681.974450955533;
  const G = 3.999843853973347;
  let Q = 0.7071752369554196;
  let K = Math.tan((Math.PI * f0) / fs);
  const Vh = 10 ** (G / 20);
  const Vb = Vh ** 0.4996667741545416;
  let a0 = 1 + K / Q + K * K;
  const shelf: Biquad = {
    b0: (Vh + (Vb * K) / Q + K * K) / a0,
    b1: (2 * (K * K - Vh)) / a0,
    b2: (Vh - (Vb * K) / Q + K * K) / a0,
    a1: (2 * (K * K - 1)) / a0,
    a2: (1 - K / Q + K * K) / a0,
  };
  f0 = 38.13547087602444;
  Q = 0.5003270373238773;
  K = Math.tan((Math.PI * f0) / fs);
  a0 = 1 + K / Q + K * K;
  const highpass: Biquad = { b0: 1, b1: -2, b2: 1, a1: (2 * (K * K - 1)) / a0, a2: (1 - K / Q + K * K) / a0 };
  return [shelf, highpass];
}

export class LoudnessMeter {
  private readonly f1: Biquad;
  private readonly f2: Biquad;
  /** Per channel: the two biquads' states (transposed direct form II). */
  private readonly state: Float64Array;
  private readonly hop: number;
  private inHop = 0;
  private hopSum = 0;
  /** Sum over channels of the K-weighted squares, per 100 ms segment. */
  private readonly segments: number[] = [];
  private frames = 0;

  constructor(
    readonly sampleRate: number,
    readonly channels: number,
  ) {
    [this.f1, this.f2] = kWeighting(sampleRate);
    this.state = new Float64Array(channels * 4);
    this.hop = Math.max(1, Math.round(sampleRate / 10));
  }

  /** Adds `samples` (interleaved, `channels` per frame). */
  add(samples: Float32Array): void {
    const ch = this.channels;
    const { b0, b1, b2, a1, a2 } = this.f1;
    const { b0: c0, b1: c1, b2: c2, a1: d1, a2: d2 } = this.f2;
    const st = this.state;
    const frames = Math.floor(samples.length / ch);
    const hop = this.hop;
    // The 100 ms segments this chunk touches: the open one, then one per hop boundary crossed.
    const nSeg = Math.floor((this.inHop + frames) / hop) + 1;
    const seg = new Float64Array(nSeg);
    seg[0] = this.hopSum;
    // channel by channel over the whole chunk (the filter states stay in locals)
    for (let c = 0; c < ch; c++) {
      let s1 = st[c * 4]!;
      let s2 = st[c * 4 + 1]!;
      let t1 = st[c * 4 + 2]!;
      let t2 = st[c * 4 + 3]!;
      let k = 0;
      let left = hop - this.inHop;
      let acc = 0;
      for (let i = 0, j = c; i < frames; i++, j += ch) {
        const x = samples[j]!;
        const y = b0 * x + s1;
        s1 = b1 * x - a1 * y + s2;
        s2 = b2 * x - a2 * y;
        const z = c0 * y + t1;
        t1 = c1 * y - d1 * z + t2;
        t2 = c2 * y - d2 * z;
        acc += z * z;
        if (--left === 0) {
          seg[k++] += acc;
          acc = 0;
          left = hop;
        }
      }
      seg[k] += acc;
      st[c * 4] = s1;
      st[c * 4 + 1] = s2;
      st[c * 4 + 2] = t1;
      st[c * 4 + 3] = t2;
    }
    for (let k = 0; k < nSeg - 1; k++) this.segments.push(seg[k]!);
    this.hopSum = seg[nSeg - 1]!;
    this.inHop = (this.inHop + frames) % hop;
    this.frames += frames;
  }

  /** Integrated loudness in LUFS; −Infinity when every block is under the absolute gate (silence). */
  integrated(): number {
    const seg = this.segments;
    const blockFrames = 4 * this.hop;
    const blocks: number[] = [];
    for (let j = 0; j + 4 <= seg.length; j++) blocks.push((seg[j]! + seg[j + 1]! + seg[j + 2]! + seg[j + 3]!) / blockFrames);
    if (blocks.length === 0 && this.frames > 0) {
      // shorter than one 400 ms block: the whole signal as one block
      blocks.push((seg.reduce((a, b) => a + b, 0) + this.hopSum) / this.frames);
    }
    const lufs = (z: number) => -0.691 + 10 * Math.log10(z);
    const absolute = blocks.filter((z) => lufs(z) > -70);
    if (absolute.length === 0) return -Infinity;
    const relative = lufs(absolute.reduce((a, b) => a + b, 0) / absolute.length) - 10;
    const gated = absolute.filter((z) => lufs(z) > relative);
    return lufs(gated.reduce((a, b) => a + b, 0) / gated.length);
  }

  get seconds(): number {
    return this.frames / this.sampleRate;
  }
}

// ---------------------------------------------------------------------------------------------
// True peak: 4x polyphase interpolation

const TAPS = 12;
/** Interpolating between frame n and n+1 uses frames n-5 .. n+6. */
const BEHIND = TAPS / 2 - 1;
const AHEAD = TAPS / 2;
/** Frames per block in the skip test of truePeaks(). */
const BLOCK = 32;

function besselI0(x: number): number {
  let sum = 1;
  let term = 1;
  for (let k = 1; k < 50; k++) {
    term *= (x / (2 * k)) ** 2;
    sum += term;
    if (term < sum * 1e-12) break;
  }
  return sum;
}

/** Taps for the points n + 1/4, n + 2/4, n + 3/4: PHASES[p][k] weights frame n - BEHIND + k. */
const PHASES: Float64Array[] = [1, 2, 3].map((p) => {
  const f = p / 4;
  const beta = 6;
  const half = TAPS / 2;
  const h = new Float64Array(TAPS);
  for (let k = 0; k < TAPS; k++) {
    const t = f - (k - BEHIND); // from the tap's frame to the point
    const sinc = t === 0 ? 1 : Math.sin(Math.PI * t) / (Math.PI * t);
    const r = t / half;
    const w = Math.abs(r) >= 1 ? 0 : besselI0(beta * Math.sqrt(1 - r * r)) / besselI0(beta);
    h[k] = sinc * w;
  }
  const dc = h.reduce((a, b) => a + b, 0);
  for (let k = 0; k < TAPS; k++) h[k]! /= dc;
  return h;
});
/** No point interpolated from samples all within ±m exceeds m·PEAK_BOUND (the largest sum of |taps|). */
const PEAK_BOUND = Math.max(...PHASES.map((h) => h.reduce((a, b) => a + Math.abs(b), 0)));

/**
 * True peak around each of `count` frames: out[i] = the largest |value| over channels at frame
 * `from + i` and the three interpolated points after it. Each channel array holds frame j at index
 * j - `first`, with BEHIND frames before `from` and AHEAD after the last. Blocks whose samples
 * cannot interpolate above `skipAtOrBelow` are not looked at: their out stays 0.
 */
function truePeaks(xs: Float64Array[], first: number, from: number, count: number, skipAtOrBelow: number, out: Float64Array): void {
  const [h1, h2, h3] = PHASES as [Float64Array, Float64Array, Float64Array];
  out.fill(0, 0, count);
  for (const x of xs) {
    for (let b0 = 0; b0 < count; b0 += BLOCK) {
      const b1 = Math.min(count, b0 + BLOCK);
      const lo = from + b0 - first;
      const hi = from + b1 - first;
      let m = 0;
      for (let j = lo - BEHIND; j < hi + AHEAD; j++) {
        const v = x[j]!;
        const a = v < 0 ? -v : v;
        if (a > m) m = a;
      }
      if (m * PEAK_BOUND <= skipAtOrBelow) continue;
      for (let i = b0; i < b1; i++) {
        const c = from + i - first;
        const v = x[c]!;
        let best = v < 0 ? -v : v;
        let y1 = 0;
        let y2 = 0;
        let y3 = 0;
        const base = c - BEHIND;
        for (let k = 0; k < TAPS; k++) {
          const s = x[base + k]!;
          y1 += h1[k]! * s;
          y2 += h2[k]! * s;
          y3 += h3[k]! * s;
        }
        if (y1 < 0) y1 = -y1;
        if (y2 < 0) y2 = -y2;
        if (y3 < 0) y3 = -y3;
        if (y1 > best) best = y1;
        if (y2 > best) best = y2;
        if (y3 > best) best = y3;
        if (best > out[i]!) out[i] = best;
      }
    }
  }
}

/**
 * Per-channel contiguous frames with a movable start: push() appends interleaved frames (times a
 * gain), drop() forgets frames before an index. Frame j of channel c is ch[c][j - first].
 */
class FrameWindow {
  ch: Float64Array[];
  first: number;
  end: number;

  constructor(channels: number, first: number, silentFrames: number) {
    this.first = first;
    this.end = first + silentFrames;
    this.ch = Array.from({ length: channels }, () => new Float64Array(silentFrames));
  }

  push(input: Float32Array, gain: number): void {
    const n = this.ch.length;
    const frames = Math.floor(input.length / n);
    const have = this.end - this.first;
    this.ch = this.ch.map((old, c) => {
      const next = new Float64Array(have + frames);
      next.set(old.subarray(0, have));
      for (let i = 0, j = c; i < frames; i++, j += n) next[have + i] = input[j]! * gain;
      return next;
    });
    this.end += frames;
  }

  drop(before: number): void {
    if (before <= this.first) return;
    const k = before - this.first;
    this.ch = this.ch.map((a) => a.slice(k, this.end - this.first));
    this.first = before;
  }
}

export class TruePeakMeter {
  private readonly win: FrameWindow;
  /** Frames before this have been measured. */
  private next = 0;
  private peak = 0;
  private samplePeak = 0;
  private scratch = new Float64Array(0);

  constructor(readonly channels: number) {
    this.win = new FrameWindow(channels, -BEHIND, BEHIND);
  }

  add(samples: Float32Array): void {
    const frames = Math.floor(samples.length / this.channels);
    let sp = this.samplePeak;
    for (let i = 0; i < frames * this.channels; i++) {
      const v = samples[i]!;
      const a = v < 0 ? -v : v;
      if (a > sp) sp = a;
    }
    this.samplePeak = sp;
    this.win.push(samples, 1);
    this.measure(this.win.end - AHEAD);
  }

  private measure(until: number): void {
    const count = until - this.next;
    if (count <= 0) return;
    if (this.scratch.length < count) this.scratch = new Float64Array(count);
    truePeaks(this.win.ch, this.win.first, this.next, count, this.peak, this.scratch);
    let p = this.peak;
    for (let i = 0; i < count; i++) if (this.scratch[i]! > p) p = this.scratch[i]!;
    this.peak = p;
    this.next = until;
    this.win.drop(until - BEHIND);
  }

  /** True peak (linear, 1 = full scale), the last frames interpolated against the silence after them. */
  truePeak(): number {
    const tail = new FrameWindow(this.channels, this.win.first, 0);
    tail.ch = this.win.ch.map((a) => {
      const b = new Float64Array(a.length + AHEAD);
      b.set(a);
      return b;
    });
    tail.end = this.win.end + AHEAD;
    const count = this.win.end - this.next;
    let p = Math.max(this.peak, this.samplePeak);
    if (count > 0) {
      const out = new Float64Array(count);
      truePeaks(tail.ch, tail.first, this.next, count, p, out);
      for (let i = 0; i < count; i++) if (out[i]! > p) p = out[i]!;
    }
    return p;
  }

  get samplePeakLinear(): number {
    return this.samplePeak;
  }
}

// ---------------------------------------------------------------------------------------------
// Look-ahead true-peak limiter

export interface LimiterOptions {
  /** Look-ahead and attack, ms (default 3). */
  lookaheadMs?: number;
  /** Release time constant, ms (default 80). */
  releaseMs?: number;
}

/**
 * Applies `gainDb`, then holds the true peak at `ceilingDb`. Output frames come out `delay`
 * frames late; once flush() is called the total out equals the total in.
 *
 * For each frame n, req[n] = min(1, ceiling / truePeakAround(n)). h[m] = min(req[m .. m+L-1])
 * (the look-ahead), h2 = h with an exponential release (h2 ≤ h), and the gain at n is the mean of
 * h2[n-L+1 .. n]. Every window [m, m+L-1] with m in n-L+1..n contains n, so each averaged
 * h2[m] ≤ req[n], and the gain at n is ≤ req[n]: the limited peak at n is ≤ the ceiling. (The
 * points between frames are interpolated from neighbours whose gains differ by a few per cent at
 * most; the ceiling sits under the promised maximum for that and for the codecs.)
 */
export class TruePeakLimiter {
  private readonly ch: 1 | 2;
  private readonly L: number;
  private readonly gain: number;
  private readonly ceiling: number;
  private readonly release: number;
  private readonly win: FrameWindow;
  /** The next frame whose required gain is computed. */
  private nextReq = 0;
  private readonly req: Float64Array;
  private readonly dq: Int32Array;
  private readonly mask: number;
  private dqHead = 0;
  private dqTail = 0;
  private readonly h2: Float64Array;
  private h2Prev = 1;
  private sum: number;
  private minGain = 1;
  private scratch = new Float64Array(0);

  constructor(sampleRate: number, channels: 1 | 2, gainDb: number, ceilingDb: number, opts: LimiterOptions = {}) {
    this.ch = channels;
    this.L = Math.max(1, Math.round(((opts.lookaheadMs ?? 3) / 1000) * sampleRate));
    this.gain = dbToGain(gainDb);
    this.ceiling = dbToGain(ceilingDb);
    this.release = 1 - Math.exp(-1 / (((opts.releaseMs ?? 80) / 1000) * sampleRate));
    let size = 16;
    while (size < this.L + 2) size <<= 1;
    this.mask = size - 1;
    this.dq = new Int32Array(size);
    this.req = new Float64Array(size);
    // Before frame 0 there is silence: its required gains are 1, and so are h2 and their sum.
    this.h2 = new Float64Array(size).fill(1);
    this.sum = this.L;
    const before = this.L + BEHIND;
    this.win = new FrameWindow(channels, -before, before);
  }

  /** Frames between a frame going in and its coming out. */
  get delay(): number {
    return this.L - 1 + AHEAD;
  }

  /** The deepest gain reduction so far, dB (0 or negative). */
  get reductionDb(): number {
    return gainToDb(this.minGain);
  }

  process(input: Float32Array): Float32Array {
    this.win.push(input, this.gain);
    return this.run();
  }

  /** The last `delay` frames (pushes silence through). */
  flush(): Float32Array {
    this.win.push(new Float32Array(this.delay * this.ch), 1);
    return this.run();
  }

  private run(): Float32Array {
    const { ch, L, ceiling, release, req, dq, mask, h2, win } = this;
    const until = win.end - AHEAD; // required gains computable for frames < until
    const count = until - this.nextReq;
    if (count <= 0) return new Float32Array(0);
    if (this.scratch.length < count) this.scratch = new Float64Array(count);
    const tp = this.scratch;
    truePeaks(win.ch, win.first, this.nextReq, count, ceiling, tp);
    const firstOut = Math.max(0, this.nextReq - L + 1);
    const lastOut = until - L; // inclusive
    const out = new Float32Array(Math.max(0, lastOut - firstOut + 1) * ch);
    let w = 0;
    let { dqHead, dqTail, h2Prev, sum, minGain } = this;
    const first = win.first;
    const x0 = win.ch[0]!;
    const x1 = ch > 1 ? win.ch[1]! : x0;
    for (let i = 0; i < count; i++) {
      const n = this.nextReq + i;
      const t = tp[i]!;
      const g = t > ceiling ? ceiling / t : 1;
      // sliding minimum over the last L required gains (a monotonic deque of frame indices)
      while (dqTail > dqHead && req[dq[(dqTail - 1) & mask]! & mask]! >= g) dqTail--;
      dq[dqTail & mask] = n;
      req[n & mask] = g;
      dqTail++;
      const m = n - L + 1;
      while (dq[dqHead & mask]! < m) dqHead++;
      const h = req[dq[dqHead & mask]! & mask]!;
      let v = h2Prev + (1 - h2Prev) * release;
      if (h < v) v = h;
      h2Prev = v;
      sum += v - h2[(m - L) & mask]!;
      h2[m & mask] = v;
      if (m < 0) continue;
      // the gain for frame m: the mean of h2 over the L frames ending at m
      const a = sum < L ? sum / L : 1;
      if (a < minGain) minGain = a;
      const at = m - first;
      if (ch === 1) {
        out[w++] = x0[at]! * a;
      } else {
        out[w * 2] = x0[at]! * a;
        out[w * 2 + 1] = x1[at]! * a;
        w++;
      }
    }
    Object.assign(this, { dqHead, dqTail, h2Prev, sum, minGain });
    this.nextReq = until;
    // keep what the next run reads: frames from the next output (m) and the interpolation's reach back
    win.drop(Math.min(until - L + 1, until - BEHIND));
    return w * ch === out.length ? out : out.subarray(0, w * ch);
  }
}
