// The part of the `verovio` npm package (WebAssembly engraver) that src/render/scorePicture.ts
// uses; the package ships no types.
declare module 'verovio/wasm' {
  export default function createVerovioModule(): Promise<unknown>;
}

declare module 'verovio/esm' {
  export class VerovioToolkit {
    constructor(module: unknown);
    setOptions(options: Record<string, unknown>): void;
    loadData(data: string): boolean;
    getPageCount(): number;
    getLog(): string;
    renderToSVG(page?: number, xmlDeclaration?: boolean): string;
  }
}
