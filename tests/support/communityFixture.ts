/**
 * A small world for community tests: a tiny corpus (9 short real pieces from the dataset, two
 * composers), the tiny untrained model as the shipped model, and a config pointing at a temp
 * data folder. Fast enough to retrain in a few seconds.
 */
import { copyFile, mkdir, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { communityConfigFromEnv, type CommunityConfig } from '../../src/community/config.ts';
import { parseMidi } from '../../src/midi/read.ts';
import type { PianoNote } from '../../src/midi/types.ts';
import { encodeMidi } from '../../src/midi/write.ts';
import type { Hyperparameters } from '../../src/model/note/network.ts';
import { createTinyModel } from './tinyModel.ts';

export const DATASET = join(import.meta.dirname, '../../../shared/datasets/piano-midi-de/midis');

export const TINY_CORPUS = [
  'Chopin/chpn-p20.mid',
  'Chopin/chpn-p11.mid',
  'Chopin/chpn-p10.mid',
  'Chopin/chpn-p1.mid',
  'Chopin/chpn-p2.mid',
  'Schumann/scn15_4.mid',
  'Schumann/scn15_13.mid',
  'Schumann/scn68_10.mid',
  'Schumann/scn15_10.mid',
];

/** Short real pieces that are not in the tiny corpus: material for contributions. */
export const NEW_PIECES = ['Clementi/clementi_opus36_2_2.mid', 'Clementi/clementi_opus36_3_2.mid', 'Haydn/haydn_8_2.mid', 'Borodin/bor_ps5.mid', 'Chopin/chpn-p6.mid', 'Clementi/clementi_opus36_1_2.mid'];

export interface CommunityWorld {
  root: string;
  datasetDir: string;
  modelDir: string;
  env: Record<string, string>;
  config: CommunityConfig;
}

export async function createCommunityWorld(env: Record<string, string> = {}, hyperparameters?: Hyperparameters): Promise<CommunityWorld> {
  const root = await mkdtemp(join(tmpdir(), 'nocturne-community-'));
  const datasetDir = join(root, 'dataset');
  for (const f of TINY_CORPUS) {
    await mkdir(join(datasetDir, f.split('/')[0]), { recursive: true });
    await copyFile(join(DATASET, f), join(datasetDir, f));
  }
  const modelDir = join(root, 'shipped');
  await createTinyModel(modelDir, ['Chopin', 'Schumann'], 3, hyperparameters);
  const fullEnv: Record<string, string> = {
    NOCTURNE_DATA_DIR: join(root, 'data'),
    NOCTURNE_DATASET_DIR: datasetDir,
    NOCTURNE_MODEL_DIR: modelDir,
    NOCTURNE_CONTRIBUTION_HOLDOUT: '0',
    NOCTURNE_RETRAIN_EPOCHS: '2',
    NOCTURNE_RETRAIN_BATCH: '16',
    NOCTURNE_RETRAIN_LEARNING_RATE: '0.01',
    NOCTURNE_GATE_SAMPLES: '2',
    NOCTURNE_GATE_SAMPLE_NOTES: '64',
    ...env,
  };
  return { root, datasetDir, modelDir, env: fullEnv, config: communityConfigFromEnv(fullEnv) };
}

export async function datasetBytes(name: string): Promise<Uint8Array> {
  return new Uint8Array(await readFile(join(DATASET, name)));
}

/** The same notes written again by another program: new bytes, another tempo, same music. */
export function resaved(bytes: Uint8Array, change: (n: PianoNote) => PianoNote = (n) => n, tempoFactor = 1.25): Uint8Array {
  const piece = parseMidi(bytes, 'original.mid');
  return encodeMidi(piece.notes.map(change), piece.tempoBpm * tempoFactor, { title: 're-saved copy' });
}

/** A piece unlike piano-midi.de: high register, loud, long notes in six-note chords, slow. */
export function outlandishPiece(): Uint8Array {
  const notes: PianoNote[] = [];
  for (let i = 0; i < 40; i++) {
    for (let k = 0; k < 6; k++) notes.push({ pitch: 96 + ((i + k * 2) % 12), velocity: 127, startBeat: i * 6, durationBeats: 8, startSeconds: i * 6, durationSeconds: 8 });
  }
  return encodeMidi(notes, 60, { title: 'outlandish' });
}

/** A well-formed MIDI file whose notes are on the drum channel. */
export function drumTrack(): Uint8Array {
  const events = [0x00, 0x99, 36, 100, 0x60, 0x89, 36, 0, 0x00, 0x99, 38, 100, 0x60, 0x89, 38, 0, 0x00, 0xff, 0x2f, 0x00];
  const header = [0x4d, 0x54, 0x68, 0x64, 0, 0, 0, 6, 0, 0, 0, 1, 0, 96];
  const track = [0x4d, 0x54, 0x72, 0x6b, 0, 0, 0, events.length, ...events];
  return new Uint8Array([...header, ...track]);
}
