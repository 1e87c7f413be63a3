/**
 * Bands over a count of notes, steps or grid steps: each band starts at one of the ascending
 * `edges` and runs up to the next, the last one open-ended. The loop profile (loop lengths), the
 * loop hazard's return bands (steps matched) and the timing marginals (gaps and durations) all
 * band their values this way.
 */
export function bandOf(edges: readonly number[], value: number): number {
  let band = -1;
  while (band + 1 < edges.length && value >= edges[band + 1]) band++;
  return band;
}
