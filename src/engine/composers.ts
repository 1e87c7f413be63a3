/** Composer-name matching shared by every front end: exact, case-insensitive, "did you mean". */

export const ANY_COMPOSER = 'any';

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}

/** Names closest to `input` (prefix matches first, then small edit distance), best first. */
export function suggestComposers(input: string, names: readonly string[], limit = 3): string[] {
  const q = input.trim().toLowerCase();
  const scored = names.map((n) => {
    const l = n.toLowerCase();
    const score = l.startsWith(q) ? 0 : l.includes(q) ? 1 : 2 + editDistance(q, l);
    return { n, score };
  });
  return scored
    .filter((s) => s.score < 2 + Math.max(2, Math.ceil(q.length / 3)))
    .sort((a, b) => a.score - b.score || a.n.localeCompare(b.n))
    .slice(0, limit)
    .map((s) => s.n);
}

/**
 * The model's spelling of `input`, or undefined. "any" (no composer conditioning) is accepted.
 */
export function matchComposer(input: string, names: readonly string[]): string | undefined {
  const q = input.trim().toLowerCase();
  if (q === ANY_COMPOSER) return ANY_COMPOSER;
  return names.find((n) => n.toLowerCase() === q);
}

export function unknownComposerMessage(input: string, names: readonly string[]): string {
  const suggestions = suggestComposers(input, names);
  const hint = suggestions.length ? ` Did you mean ${suggestions.join(', ')}?` : ` Known: ${names.join(', ')}.`;
  return `unknown composer ${JSON.stringify(input)}.${hint}`;
}
