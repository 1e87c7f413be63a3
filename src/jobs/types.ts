/**
 * Job records: one per piece a chat user asked for, kept in keyv so that `show` works after a
 * restart and no job is lost in a crash. Plain JSON objects only.
 */
import type { AudioFormat } from '../engine/types.ts';

export type Platform = 'discord' | 'slack' | 'terminal';

/** Who asked, and where the answer goes. */
export interface Requester {
  platform: Platform;
  userId: string;
  userName: string;
  /** Discord guild or Slack team; undefined in DMs and the terminal. */
  serverId?: string;
  channelId: string;
  /** May change server settings (Discord: Manage Server; Slack: workspace admin; terminal: yes). */
  isManager: boolean;
}

/**
 * An adapter's own address for a reply that must outlive the process (a Discord interaction
 * token, a Slack message ts): what the adapter needs to answer a recovered job after a restart.
 */
export type ReplyAddress = Record<string, string>;

export type JobKind = 'compose' | 'continue' | 'variation' | 'regenerate';

export type JobState = 'queued' | 'composing' | 'rendering' | 'done' | 'failed';

export const OPEN_STATES: readonly JobState[] = ['queued', 'composing', 'rendering'];

export interface JobParams {
  /** The composer as the user gave it (matched case-insensitively by the engine). */
  composer: string;
  notes: number;
  temperature?: number;
  topP?: number;
  /** Always set before the job is stored, so a re-queued job gives the same notes. */
  randomSeed: number;
  format: AudioFormat;
  /** Set for continuations: where the seed MIDI came from, for messages. */
  seedName?: string;
  /** The key asked for, as src/tokens/key.ts names it ("C# major"); absent: any key. */
  key?: string;
  /** The tempo asked for, BPM; absent: the composer's (or the seed's). */
  tempoBpm?: number;
  /** Also make the score (piece.musicxml and a picture of its first page). */
  score?: boolean;
  /** Continuations: the seed's own notes open the piece posted (else only the new notes). */
  includeSeed?: boolean;
}

export interface JobOutputs {
  midi: string;
  audio?: string;
  png: string;
  /** Why the audio is not the plain stereo WAV (resampled, OGG, or left out). */
  audioNote?: string;
  noteCount: number;
  musicSeconds: number;
  composeSeconds: number;
  /** The composer as the model spells it. */
  composer: string;
  /** The key the piece is written in ("D minor", "any"); absent in records from before the controls. */
  key?: string;
  /** The key its notes read as (the engine's estimate). */
  estimatedKey?: string;
  /** Why the key written is not the one asked for (a model without a key input transposes). */
  keyNote?: string;
  /** The tempo of the MIDI and the audio, BPM. */
  tempoBpm?: number;
  /** includeSeed: how many of the piece's notes, at its start, are the seed's. */
  seedNotes?: number;
  /** piece.musicxml and the picture of its first page, when the score was made. */
  score?: string;
  scorePicture?: string;
}

export interface JobRecord {
  id: string;
  kind: JobKind;
  /** The job a button acted on (Continue, Variation, Regenerate). */
  parentId?: string;
  who: Requester;
  /**
   * The server, workspace or DM the job belongs to (src/jobs/tenant.ts): its id reaches it only
   * from there. Records from before this field take it from `who`.
   */
  tenant?: string;
  address?: ReplyAddress;
  params: JobParams;
  /** The seed MIDI, copied into the job's folder (continuations only). */
  seedPath?: string;
  /** Largest audio file the destination accepts, in bytes. */
  uploadLimitBytes?: number;
  outDir: string;
  modelVersion: string;
  state: JobState;
  createdAt: string;
  updatedAt: string;
  finishedAt?: string;
  outputs?: JobOutputs;
  /** One line, for the user. */
  error?: string;
  /** 'input': the request cannot be honoured as given; 'internal': our fault; 'interrupted': a restart. */
  errorKind?: 'input' | 'internal' | 'interrupted';
  /** How many times a restart re-queued this job. */
  requeues?: number;
  /**
   * How many times the bot went down (a crash, or a shutdown that cut it off) while this job was
   * being composed or rendered: the crash-loop guard's count. A job that only waited in the queue
   * while the bot went down is not counted.
   */
  interruptions?: number;
  /**
   * The bot instance (NOCTURNE_INSTANCE) that answers this job: the one that accepted it, or the
   * one that took it over from a gone instance. Records from before instances are ownerless.
   */
  owner?: string;
}

/** What a command asks for; the queue turns it into a JobRecord. */
export interface JobInput {
  kind: JobKind;
  parentId?: string;
  who: Requester;
  address?: ReplyAddress;
  params: Omit<JobParams, 'randomSeed'> & { randomSeed?: number };
  /** Seed MIDI bytes for a continuation (already checked). */
  seedMidi?: Uint8Array;
  uploadLimitBytes?: number;
}

/** A bot instance's heartbeat record in the job store (src/scaleout/instances.ts keeps it fresh). */
export interface InstanceRecord {
  name: string;
  pid: number;
  host: string;
  startedAt: string;
  beatAt: string;
  /** Tells two processes apart that share host and pid (a container restarted with pid 1). */
  token: string;
}
