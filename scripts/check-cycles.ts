/**
 * Import-cycle check for `npm run lint` (issue 9): reads the relative imports of every .ts file
 * under src/, commands/ and tests/, and fails when
 *   - files import each other in a cycle (a file cycle),
 *   - product code (src/, commands/) imports from tests/, or
 *   - the bot imports src/testing/ (the fakes and throw-away servers that tests/ and the load
 *     benches in src/bench/ share), or
 *   - anything but the command-line dispatcher (src/cli/main.ts), src/app/ itself and tests/
 *     imports src/app/ (the process entry points and their wiring sit on top of every layer).
 *
 * Only value imports count, as Node runs them: static `import`/`export ... from`, bare
 * `import './x.ts'` and dynamic `import('./x.ts')`. `import type`, `{ type X }` specifiers and
 * imports used only as types are erased before Node sees them, so they are not edges. The erasure
 * is esbuild's (the transform tsx runs), which also drops comments, so no comment or type
 * position is mistaken for an import.
 *
 * Usage: tsx scripts/check-cycles.ts [--types] [--folders]
 *   --types    count type-only imports too (reports the cycles of the type graph; still fails)
 *   --folders  also print the cycles between folders (src/chat, src/adapters, ...); informational
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { transformSync } from 'esbuild';

const ROOT = resolve(import.meta.dirname, '..');
const SCANNED = ['src', 'commands', 'tests'];
const PRODUCT = ['src', 'commands'];
/** src/testing/ may be imported from these folders only. */
const TESTING = 'src/testing/';
const MAY_USE_TESTING = ['tests/', 'src/bench/', TESTING];
/** src/app/ may be imported from these only. */
const APP = 'src/app/';
const MAY_USE_APP = ['tests/', 'src/cli/main.ts', APP];

const withTypes = process.argv.includes('--types');
const withFolders = process.argv.includes('--folders');

function listTs(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listTs(path));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

/** The specifiers of the value imports of one file (type-only ones too with --types). */
function importsOf(file: string): string[] {
  const source = readFileSync(file, 'utf8');
  // With --types, esbuild is told to keep every import as written (TypeScript's
  // verbatimModuleSyntax); `import type` and `{ type X }` are still removed then, so they are
  // rewritten to value imports first.
  const text = withTypes ? source.replace(/\bimport\s+type\s+(?=[{*\w])/g, 'import ').replace(/\bexport\s+type\s+(?=[{*])/g, 'export ').replace(/([{,]\s*)type\s+(?=\w+\s*(?:[,}]|as\b))/g, '$1') : source;
  const js = transformSync(text, {
    loader: 'ts',
    format: 'esm',
    sourcefile: file,
    tsconfigRaw: withTypes ? { compilerOptions: { verbatimModuleSyntax: true } } : {},
  }).code;
  const found: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\b[^;'"]*?\bfrom\s*["']([^"']+)["']/gm, // import x from / export {x} from / export * from
    /^\s*import\s*["']([^"']+)["']/gm, // import './side-effect.ts'
    /\bimport\(\s*["']([^"']+)["']\s*\)/g, // await import('./x.ts')
  ];
  for (const p of patterns) for (const m of js.matchAll(p)) found.push(m[1]);
  return found;
}

const rel = (p: string) => relative(ROOT, p).split(sep).join('/');
const files = SCANNED.flatMap((d) => listTs(join(ROOT, d))).map(rel).sort();
const known = new Set(files);

const graph = new Map<string, Set<string>>();
const problems: string[] = [];
for (const file of files) {
  const edges = new Set<string>();
  for (const spec of importsOf(join(ROOT, file))) {
    if (!spec.startsWith('.')) continue; // packages and node: builtins
    const target = rel(resolve(dirname(join(ROOT, file)), spec));
    if (!known.has(target)) continue; // JSON, files outside the scanned folders
    edges.add(target);
    if (PRODUCT.some((d) => file.startsWith(`${d}/`)) && target.startsWith('tests/')) problems.push(`product code imports test code: ${file} -> ${target}`);
    if (target.startsWith(TESTING) && !MAY_USE_TESTING.some((d) => file.startsWith(d))) problems.push(`only tests/ and src/bench/ may import ${TESTING}: ${file} -> ${target}`);
    if (target.startsWith(APP) && !MAY_USE_APP.some((d) => file.startsWith(d))) problems.push(`only src/cli/main.ts (and tests/) may import ${APP}: ${file} -> ${target}`);
  }
  graph.set(file, edges);
}

/** Strongly connected components (Tarjan); each one with more than one node holds a cycle. */
function components(g: Map<string, Set<string>>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of g.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || g.get(v)?.has(v)) out.push(comp.sort());
    }
  };
  for (const v of [...g.keys()].sort()) if (!idx.has(v)) visit(v);
  return out;
}

/** One shortest cycle through the first member of a component, for the message. */
function cycleThrough(g: Map<string, Set<string>>, comp: string[]): string[] {
  const inComp = new Set(comp);
  const start = comp[0];
  const prev = new Map<string, string>();
  const queue = [start];
  while (queue.length) {
    const v = queue.shift()!;
    for (const w of g.get(v) ?? []) {
      if (!inComp.has(w)) continue;
      if (w === start) {
        const path = [v];
        while (path[0] !== start) path.unshift(prev.get(path[0])!);
        return [...path, start];
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

for (const comp of components(graph)) {
  const cycle = cycleThrough(graph, comp).join(' -> ');
  problems.push(comp.length > 2 ? `file cycle among ${comp.length} files (${comp.join(', ')}), e.g. ${cycle}` : `file cycle: ${cycle}`);
}

if (withFolders) {
  // A file directly in src/ (config.ts, redact.ts) is a node of its own: src/ is not a layer.
  const folderOf = (f: string) => (dirname(f) === 'src' ? f : dirname(f));
  const folders = new Map<string, Set<string>>();
  for (const [file, edges] of graph) {
    const from = folderOf(file);
    if (!folders.has(from)) folders.set(from, new Set());
    for (const t of edges) if (folderOf(t) !== from) folders.get(from)!.add(folderOf(t));
  }
  const folderCycles = components(folders);
  for (const comp of folderCycles) console.log(`folder cycle (informational): ${comp.join(', ')}, e.g. ${cycleThrough(folders, comp).join(' -> ')}`);
  if (!folderCycles.length) console.log('no folder cycles');
}

const kind = withTypes ? 'value and type imports' : 'value imports';
if (problems.length) {
  for (const p of problems) console.error(`check-cycles: ${p}`);
  console.error(`check-cycles: ${problems.length} problem(s) in the ${kind} of ${files.length} files`);
  process.exit(1);
}
console.log(`check-cycles: no file cycles in the ${kind} of ${files.length} files; product code does not import tests/ (nor, outside src/bench, src/testing/; nor, outside src/cli/main.ts, src/app/)`);
