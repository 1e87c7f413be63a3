/** The picture of a score's first page (src/render/scorePicture.ts): Verovio → SVG → PNG. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createCanvas, Image } from '@napi-rs/canvas';
import { scoreToMusicXml } from '../src/render/score.ts';
import { renderScorePicture, renderScoreSvg } from '../src/render/scorePicture.ts';
import { ANY_KEY } from '../src/tokens/key.ts';
import { corpusExcerpt, input, triplets } from './support/scoreInputs.ts';

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function inkShare(png: Uint8Array): { width: number; height: number; ink: number } {
  const image = new Image();
  image.src = Buffer.from(png);
  const canvas = createCanvas(image.width, image.height);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(image, 0, 0);
  const { data } = ctx.getImageData(0, 0, image.width, image.height);
  let dark = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i] < 128 && data[i + 1] < 128 && data[i + 2] < 128) dark++;
  return { width: image.width, height: image.height, ink: dark / (image.width * image.height) };
}

test('the first page of a score is a PNG of A4 proportions with notation on it', async () => {
  const excerpt = await corpusExcerpt('Chopin/chpn_op7_1.mid', 200);
  const png = await renderScorePicture(scoreToMusicXml(input(excerpt.tokens, ANY_KEY, { tempoBpm: excerpt.tempoBpm })));
  assert.deepEqual([...png.subarray(0, 8)], PNG_SIGNATURE);
  const { width, height, ink } = inkShare(png);
  assert.ok(Math.abs(width - 1240) <= 15, `width ${width}`);
  assert.ok(Math.abs(height / width - 297 / 210) < 0.01, `${width}x${height}`);
  assert.ok(ink > 0.005 && ink < 0.3, `dark pixels ${(ink * 100).toFixed(2)}%`);
});

test('the SVG carries clefs, key and time signature, and the tempo glyph is drawn (its font registered)', async () => {
  const xml = scoreToMusicXml(input(triplets(), 2));
  const svg = await renderScoreSvg(xml);
  for (const cls of ['clef', 'keySig', 'meterSig', 'beam', 'tuplet', 'tempo']) assert.match(svg, new RegExp(`class="${cls}`), cls);
  const small = await renderScorePicture(xml, { widthPx: 620 });
  assert.ok(Math.abs(inkShare(small).width - 620) <= 15, 'the width follows widthPx (Verovio scales in whole percent)');
});
