/**
 * A PNG of the first page of a MusicXML score: Verovio (WebAssembly, offline) engraves the page as
 * SVG, and @napi-rs/canvas (Skia) draws that SVG on a white page. Skia's SVG reader ignores the
 * @font-face that Verovio embeds for the music glyphs it writes as text (the note of the tempo
 * mark), so that font is registered with the canvas once, under its own family name.
 */
import { createCanvas, GlobalFonts, Image } from '@napi-rs/canvas';
import type { VerovioToolkit } from 'verovio/esm';

export interface ScorePictureOptions {
  /** Page width in pixels (A4 proportions); default 1240. */
  widthPx?: number;
}

/** A4 in Verovio's page units (tenths of a millimetre). */
const PAGE = { width: 2100, height: 2970 } as const;

let toolkit: Promise<VerovioToolkit> | undefined;
const registeredFonts = new Set<string>();

/**
 * One toolkit for the process: loading the WebAssembly module takes about a second. Verovio is
 * imported here, on the first score, not when this file is: its 7 MB module costs about 3 s to
 * import under tsx, which every process and engine thread paid at start (the engine imports this
 * file) whether or not it ever drew a score.
 */
function verovio(): Promise<VerovioToolkit> {
  toolkit ??= Promise.all([import('verovio/esm'), import('verovio/wasm')]).then(async ([{ VerovioToolkit }, { default: createVerovioModule }]) => new VerovioToolkit(await createVerovioModule()));
  return toolkit;
}

/** Registers the fonts an SVG embeds as base64 @font-face rules (once per family). */
export function registerEmbeddedFonts(svg: string): void {
  const rule = /@font-face\s*{\s*font-family:\s*'([^']+)';\s*src:\s*url\(data:[^;]+;charset=utf-8;base64,([A-Za-z0-9+/=]+)\)/g;
  for (const [, family, data] of svg.matchAll(rule)) {
    if (registeredFonts.has(family)) continue;
    GlobalFonts.register(Buffer.from(data, 'base64'), family);
    registeredFonts.add(family);
  }
}

/** The first page of the score as SVG text. */
export async function renderScoreSvg(musicXml: string, opts: ScorePictureOptions = {}): Promise<string> {
  const tk = await verovio();
  const widthPx = opts.widthPx ?? 1240;
  tk.setOptions({
    pageWidth: PAGE.width,
    pageHeight: PAGE.height,
    scale: Math.round((widthPx / PAGE.width) * 100),
    pageMarginLeft: 80,
    pageMarginRight: 80,
    pageMarginTop: 60,
    pageMarginBottom: 60,
    adjustPageHeight: false,
    breaks: 'auto',
    header: 'auto',
    footer: 'encoded',
  });
  if (!tk.loadData(musicXml)) throw new Error(`Verovio could not read the score: ${tk.getLog().trim().slice(0, 300)}`);
  return tk.renderToSVG(1);
}

/** PNG bytes of the first page of a MusicXML score. */
export async function renderScorePicture(musicXml: string, opts: ScorePictureOptions = {}): Promise<Uint8Array> {
  const svg = await renderScoreSvg(musicXml, opts);
  registerEmbeddedFonts(svg);
  const image = new Image();
  image.src = Buffer.from(svg);
  const canvas = createCanvas(image.width, image.height);
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = 'white';
  ctx.fillRect(0, 0, image.width, image.height);
  ctx.drawImage(image, 0, 0);
  return new Uint8Array(await canvas.encode('png'));
}
