/** The bench's figures, their targets (from the engine issue), and the table printed for people. */

export type Figures = Record<string, number | string | boolean | null | string[] | Record<string, unknown> | unknown[]>;

export interface Target {
  /** JSON field. */
  field: string;
  label: string;
  unit: string;
  /** The target as written in the issue, e.g. "≤ 300 ms". */
  text: string;
  pass: (value: number, figures: Figures) => boolean;
  /** Left out of the table (not the JSON checks) when not measured. */
  optional?: boolean;
}

/** Fields the JSON always carries (null when a section was skipped or failed). */
export const REQUIRED_FIELDS = [
  'gen500_ms_batch1',
  'gen500_ms_batch16',
  'refeed_over_stateful',
  'train_tokens_per_s',
  'm2m_over_m2o',
  'matmul_gflops',
  'train_share_of_matmul',
  'compose_wav_s',
  'compose_ogg_s',
  'peak_rss_mb',
  'backend',
  'machine',
  'model_version',
] as const;

/** Targets on the 2-core machine with wasm (issue 2, "Benchmark"). */
export const TARGETS: Target[] = [
  { field: 'gen500_ms_batch1', label: '500 notes, batch 1', unit: 'ms', text: '≤ 300 ms', pass: (v) => v <= 300 },
  {
    field: 'gen500_ms_batch16',
    label: '500 notes, batch 16',
    unit: 'ms',
    text: '≤ 3× batch 1',
    pass: (v, f) => typeof f.gen500_ms_batch1 === 'number' && v <= 3 * f.gen500_ms_batch1,
  },
  { field: 'refeed_over_stateful', label: 're-feed / stateful, per note', unit: '×', text: '≥ 30×', pass: (v) => v >= 30 },
  { field: 'train_tokens_per_s', label: 'training, many-to-many', unit: 'tok/s', text: '', pass: () => true },
  { field: 'm2m_over_m2o', label: 'many-to-many / many-to-one', unit: '×', text: '', pass: () => true },
  { field: 'matmul_gflops', label: 'backend matmul', unit: 'GFLOP/s', text: '', pass: () => true },
  { field: 'train_share_of_matmul', label: 'training FLOP rate / matmul', unit: '%', text: '≥ 50%', pass: (v) => v >= 0.5 },
  // "compose chopin 500 to audio ≤ 3 s" (issue 8): WAV is the default format; OGG (a server's or member's choice) adds the encoder.
  { field: 'compose_wav_s', label: 'compose chopin 500 → WAV', unit: 's', text: '≤ 3 s', pass: (v) => v <= 3 },
  { field: 'compose_ogg_s', label: 'compose chopin 500 → OGG', unit: 's', text: '≤ 3 s', pass: (v) => v <= 3 },
  { field: 'peak_rss_mb', label: 'peak memory (RSS)', unit: 'MB', text: '', pass: () => true },
  // From src/bench/chatLoad.ts when it is there (its own targets).
  { field: 'chat_p99_ms', label: 'chat load, p99 to the reply', unit: 'ms', text: '≤ 30 s', pass: (v) => v <= 30_000, optional: true },
  { field: 'chat_lost', label: 'chat load, requests lost', unit: '', text: '= 0', pass: (v) => v === 0, optional: true },
  { field: 'chat_idle_compose500_p50_ms', label: 'chat: idle compose chopin 500', unit: 'ms', text: '≤ 3 s', pass: (v) => v <= 3000, optional: true },
];

export interface Check {
  field: string;
  value: number | null;
  target: string;
  /** null when the figure has no target or was not measured. */
  pass: boolean | null;
}

export function checkTargets(figures: Figures): Check[] {
  return TARGETS.map((t) => {
    const v = figures[t.field];
    const value = typeof v === 'number' && Number.isFinite(v) ? v : null;
    return { field: t.field, value, target: t.text, pass: value === null || !t.text ? null : t.pass(value, figures) };
  });
}

function fmt(value: number, unit: string): string {
  if (unit === '') return Number.isInteger(value) ? String(value) : value.toFixed(2);
  if (unit === '%') return `${(value * 100).toFixed(1)}%`;
  if (unit === '×') return `${value >= 10 ? value.toFixed(0) : value.toFixed(1)}×`;
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} ${unit}`;
}

const num = (f: Figures, k: string): number | undefined => (typeof f[k] === 'number' && Number.isFinite(f[k] as number) ? (f[k] as number) : undefined);

/** What each figure is measured from: the absolute numbers behind the ratios. */
function detail(field: string, f: Figures): string {
  const n = (k: string, unit: string) => {
    const v = num(f, k);
    return v === undefined ? '?' : fmt(v, unit);
  };
  switch (field) {
    case 'gen500_ms_batch1':
      return num(f, 'gen500_ms_batch1') !== undefined ? `${fmt((f.gen500_ms_batch1 as number) / 500, 'ms')}/note, stateful` : '';
    case 'gen500_ms_batch16':
      return `${n('gen_batch16_over_batch1', '×')} batch 1; ${n('gen500_ms_per_row_batch16', 'ms')} per piece`;
    case 'refeed_over_stateful':
      return `re-feed ${n('refeed_ms_per_note', 'ms')}/note over ${f.refeed_window ?? '?'} notes (${f.refeed_notes ?? '?'} notes) vs ${n('stateful_ms_per_note', 'ms')}/note`;
    case 'train_tokens_per_s':
      return `B=${f.train_batch ?? '?'} × ${f.train_window ?? '?'} notes${num(f, 'train_memory') !== undefined ? ` + ${f.train_memory} memory (long-context)` : ''}, ${n('train_step_ms', 'ms')}/step`;
    case 'm2m_over_m2o':
      return `many-to-one ${n('m2o_targets_per_s', 'targets/s')} (${f.m2o_window ?? '?'}-note window, ${n('m2o_step_ms', 'ms')}/step)`;
    case 'matmul_gflops':
      return `tf.matMul ${f.matmul_shape ?? '?'} float32`;
    case 'train_share_of_matmul':
      return `${n('train_gflops', 'GFLOP/s')} useful (${n('train_gflop_per_step', 'GFLOP')}/step)`;
    case 'compose_wav_s':
      return f.compose_sampling_s !== undefined ? `sampling ${n('compose_sampling_s', 's')}, the rest MIDI/WAV/PNG for ${n('compose_music_s', 's')} of music (median piece${Array.isArray(f.compose_music_range_s) ? `; ${(f.compose_music_range_s as number[]).join('–')} s` : ''})` : '';
    case 'compose_ogg_s':
      return f.compose_wav_s !== undefined ? `the same pieces; the Vorbis encode and its decoded check add ${fmt((f.compose_ogg_s as number) - (f.compose_wav_s as number), 's')}` : '';
    case 'chat_p99_ms':
      return `${f.chat_users ?? '?'} users × ${f.chat_notes ?? '?'} notes at once; p50 ${n('chat_p50_ms', 'ms')}; ${n('chat_throughput_per_min', 'pieces/min')}${num(f, 'chat_batching_speedup') !== undefined ? `; batching ${n('chat_batching_speedup', '×')} vs one at a time` : ''}`;
    case 'chat_idle_compose500_p50_ms':
      return 'through the chat bot, nothing else running';
    default:
      return '';
  }
}

/** The human-readable table: figure, value, target, ✓/✗ and what it is made of. */
export function formatTable(figures: Figures): string {
  const checks = checkTargets(figures);
  const shown = checks.filter((c) => c.value !== null || !TARGETS.find((x) => x.field === c.field)?.optional);
  const rows = shown.map((c) => {
    const t = TARGETS.find((x) => x.field === c.field)!;
    const value = c.value === null ? 'n/a' : fmt(c.value, t.unit);
    const mark = c.pass === null ? (t.text && c.value === null ? '–' : ' ') : c.pass ? '✓' : '✗';
    return [t.label, value, t.text, mark, c.value === null ? '' : detail(c.field, figures)];
  });
  const header = ['figure', 'measured', 'target', '', 'from'];
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => [...r[i]].length)));
  const line = (r: string[]) => r.map((cell, i) => cell + ' '.repeat(widths[i] - [...cell].length)).join('  ').trimEnd();
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
  const context = [
    `backend ${figures.backend ?? '?'}; ${figures.machine ?? '?'}; model ${figures.model_version ?? '?'}`,
    `load average ${figures.load_avg_1m_at_start ?? '?'} at start, ${figures.load_avg_1m_at_end ?? '?'} at the end (the bench itself counts about 1)${figures.quick ? '; --quick (fewer repetitions: rough numbers)' : ''}`,
  ];
  const notes = Array.isArray(figures.notes) ? (figures.notes as string[]).map((n) => `note: ${n}`) : [];
  return [...out, '', ...context, ...notes].join('\n');
}
