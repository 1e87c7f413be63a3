/**
 * Settings of the community loop (contributions, drift, retraining), read from the environment
 * once at start and validated together: a bad setting is refused with one message that names
 * every problem, never discovered later in the middle of a retraining run.
 *
 * The result is a plain JSON object, so it travels unchanged to the retraining child process.
 */
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import cron from 'node-cron';
import { checkStoreUrl } from '../storage/backend.ts';

export interface RetrainSettings {
  /** node-cron expression for scheduled runs, or null when the schedule is off. */
  schedule: string | null;
  /** IANA time zone the schedule is read in. */
  timezone: string;
  /** Maximum epochs of one run (early stopping may end sooner). */
  epochs: number;
  /** Epochs without a better validation loss before a run stops early. */
  patience: number;
  /** Stop after the epoch that passes this many minutes. */
  maxMinutes: number;
  /** Adam learning rate when fine-tuning the serving model. */
  learningRate: number;
  /** Adam learning rate when training from scratch. */
  scratchLearningRate: number;
  /** Chunks per training batch. */
  batchSize: number;
  /** Train from fresh weights instead of fine-tuning the serving model. */
  fromScratch: boolean;
  /** A lock whose owner has not been heard from for this long is taken over. */
  staleLockMinutes: number;
}

export interface GateSettings {
  /** Promote only if candidate NLL ≤ serving NLL + this (nats per note). */
  nllTolerance: number;
  /** Generated outputs pass if their similarity ≥ min(driftThreshold, serving's − this). */
  driftTolerance: number;
  /** Pieces generated per model for the output drift check. */
  samples: number;
  /** Notes per generated piece. */
  sampleNotes: number;
}

export interface CommunityConfig {
  /** Where contributions, model versions, caches and (without storeUrl) the SQLite store live. */
  dataDir: string;
  /**
   * STORE_URL: the records (contributions' metadata, runs, the lock) go to this Redis or Postgres
   * store; unset, to the SQLite file in dataDir. Never put in argv or logs (it may hold a password).
   */
  storeUrl?: string;
  /** The training corpus (piano-midi.de layout or <Composer>/*.mid). */
  datasetDir: string;
  /** The shipped model that seeds the registry as its first version. */
  initialModelDir: string;
  /** Contributions one user may make in 24 hours. */
  contributionsPerDay: number;
  /**
   * Files one user may offer to `contribute` in a rolling hour, accepted or refused (each costs a
   * download and a check); beyond it, files are refused with "slow down" before any download.
   */
  contributionAttemptsPerHour: number;
  /** A new composer label gets its own slot once this many accepted pieces carry it. */
  newLabelMinPieces: number;
  /** Share of contributions held back for validation (decided once per contribution). */
  holdoutFraction: number;
  /** Similarity below which a contribution is flagged for a moderator. */
  driftThreshold: number;
  /** How many recent generated outputs are pooled for the output drift number. */
  driftRecentOutputs: number;
  retrain: RetrainSettings;
  gate: GateSettings;
}

/** Every setting the loop reads, with its default, for docs and `.env.example`. */
export const COMMUNITY_ENV_DEFAULTS = {
  NOCTURNE_DATA_DIR: 'data',
  NOCTURNE_DATASET_DIR: '../shared/datasets/piano-midi-de',
  NOCTURNE_MODEL_DIR: 'models/default',
  NOCTURNE_CONTRIBUTIONS_PER_DAY: '10',
  NOCTURNE_CONTRIBUTION_ATTEMPTS_PER_HOUR: '20',
  NOCTURNE_NEW_LABEL_MIN_PIECES: '3',
  NOCTURNE_CONTRIBUTION_HOLDOUT: '0.1',
  NOCTURNE_DRIFT_THRESHOLD: '0.35',
  NOCTURNE_DRIFT_RECENT_OUTPUTS: '20',
  NOCTURNE_RETRAIN_SCHEDULE: '0 4 * * 0',
  NOCTURNE_RETRAIN_TIMEZONE: 'UTC',
  NOCTURNE_RETRAIN_EPOCHS: '3',
  NOCTURNE_RETRAIN_PATIENCE: '2',
  NOCTURNE_RETRAIN_MAX_MINUTES: '60',
  NOCTURNE_RETRAIN_LEARNING_RATE: '0.0001',
  NOCTURNE_RETRAIN_SCRATCH_LEARNING_RATE: '0.003',
  NOCTURNE_RETRAIN_BATCH: '32',
  NOCTURNE_RETRAIN_FROM_SCRATCH: 'false',
  NOCTURNE_RETRAIN_STALE_LOCK_MINUTES: '',
  NOCTURNE_GATE_NLL_TOLERANCE: '0',
  NOCTURNE_GATE_DRIFT_TOLERANCE: '0.05',
  NOCTURNE_GATE_SAMPLES: '4',
  NOCTURNE_GATE_SAMPLE_NOTES: '250',
} as const;

export type CommunityEnvName = keyof typeof COMMUNITY_ENV_DEFAULTS;

/** One or more bad settings; the message lists them all on one line. */
export class CommunityConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`community settings: ${problems.join('; ')}`);
    this.name = 'CommunityConfigError';
  }
}

function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/**
 * Reads and validates the settings from `env` (process.env by default); relative paths are
 * resolved against `cwd`. Throws CommunityConfigError listing every problem.
 */
export function communityConfigFromEnv(env: Record<string, string | undefined> = process.env, cwd = process.cwd()): CommunityConfig {
  const problems: string[] = [];
  const raw = (name: CommunityEnvName): string => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? COMMUNITY_ENV_DEFAULTS[name] : v.trim();
  };
  const number = (name: CommunityEnvName, min: number, max: number, integer = false): number => {
    const text = raw(name);
    const v = Number(text);
    if (!Number.isFinite(v)) problems.push(`${name} must be a number, got ${JSON.stringify(text)}`);
    else if (integer && !Number.isInteger(v)) problems.push(`${name} must be a whole number, got ${text}`);
    else if (v < min || v > max) problems.push(`${name} must be between ${min} and ${max}, got ${text}`);
    else return v;
    return Number(COMMUNITY_ENV_DEFAULTS[name]) || min;
  };
  const flag = (name: CommunityEnvName): boolean => {
    const text = raw(name).toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(text)) return true;
    if (['0', 'false', 'no', 'off'].includes(text)) return false;
    problems.push(`${name} must be true or false, got ${JSON.stringify(raw(name))}`);
    return false;
  };

  const scheduleText = raw('NOCTURNE_RETRAIN_SCHEDULE');
  let schedule: string | null = scheduleText;
  if (['off', 'none', 'false', '0'].includes(scheduleText.toLowerCase())) schedule = null;
  else if (!cron.validate(scheduleText)) problems.push(`NOCTURNE_RETRAIN_SCHEDULE must be a cron expression (e.g. "0 4 * * 0", Sundays 04:00) or "off", got ${JSON.stringify(scheduleText)}`);
  const timezone = raw('NOCTURNE_RETRAIN_TIMEZONE');
  if (!isTimeZone(timezone)) problems.push(`NOCTURNE_RETRAIN_TIMEZONE must be an IANA time zone such as Europe/Berlin, got ${JSON.stringify(timezone)}`);

  const maxMinutes = number('NOCTURNE_RETRAIN_MAX_MINUTES', 0.01, 7 * 24 * 60);
  const staleText = raw('NOCTURNE_RETRAIN_STALE_LOCK_MINUTES');
  const staleLockMinutes = staleText === '' ? maxMinutes + 60 : number('NOCTURNE_RETRAIN_STALE_LOCK_MINUTES', 1, 30 * 24 * 60);

  const storeText = env.STORE_URL?.trim();
  let storeUrl: string | undefined;
  if (storeText) {
    const checked = checkStoreUrl(storeText);
    if ('problem' in checked) problems.push(checked.problem);
    else storeUrl = checked.url;
  }

  const config: CommunityConfig = {
    dataDir: resolve(cwd, raw('NOCTURNE_DATA_DIR')),
    storeUrl,
    datasetDir: resolve(cwd, raw('NOCTURNE_DATASET_DIR')),
    initialModelDir: resolve(cwd, raw('NOCTURNE_MODEL_DIR')),
    contributionsPerDay: number('NOCTURNE_CONTRIBUTIONS_PER_DAY', 0, 100_000, true),
    contributionAttemptsPerHour: number('NOCTURNE_CONTRIBUTION_ATTEMPTS_PER_HOUR', 1, 100_000, true),
    newLabelMinPieces: number('NOCTURNE_NEW_LABEL_MIN_PIECES', 1, 100_000, true),
    holdoutFraction: number('NOCTURNE_CONTRIBUTION_HOLDOUT', 0, 0.5),
    driftThreshold: number('NOCTURNE_DRIFT_THRESHOLD', 0, 1),
    driftRecentOutputs: number('NOCTURNE_DRIFT_RECENT_OUTPUTS', 1, 10_000, true),
    retrain: {
      schedule,
      timezone,
      epochs: number('NOCTURNE_RETRAIN_EPOCHS', 1, 1000, true),
      patience: number('NOCTURNE_RETRAIN_PATIENCE', 1, 1000, true),
      maxMinutes,
      learningRate: number('NOCTURNE_RETRAIN_LEARNING_RATE', 1e-6, 1),
      scratchLearningRate: number('NOCTURNE_RETRAIN_SCRATCH_LEARNING_RATE', 1e-6, 1),
      batchSize: number('NOCTURNE_RETRAIN_BATCH', 1, 1024, true),
      fromScratch: flag('NOCTURNE_RETRAIN_FROM_SCRATCH'),
      staleLockMinutes,
    },
    gate: {
      nllTolerance: number('NOCTURNE_GATE_NLL_TOLERANCE', 0, 10),
      driftTolerance: number('NOCTURNE_GATE_DRIFT_TOLERANCE', 0, 1),
      samples: number('NOCTURNE_GATE_SAMPLES', 1, 64, true),
      sampleNotes: number('NOCTURNE_GATE_SAMPLE_NOTES', 16, 2000, true),
    },
  };
  if (!existsSync(config.datasetDir) || !statSync(config.datasetDir).isDirectory()) problems.push(`NOCTURNE_DATASET_DIR: ${config.datasetDir} is not a folder (the training corpus, e.g. ../shared/datasets/piano-midi-de)`);
  if (!existsSync(join(config.initialModelDir, 'model.json'))) problems.push(`NOCTURNE_MODEL_DIR: no model.json in ${config.initialModelDir}`);
  if (problems.length) throw new CommunityConfigError(problems);
  return config;
}
