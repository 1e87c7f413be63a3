/** Files written whole or not at all (model folders, MIDI files, the community's records). */
import { rename, writeFile } from 'node:fs/promises';

/** Writes a file through a temporary name so a crash never leaves a half-written one. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}
