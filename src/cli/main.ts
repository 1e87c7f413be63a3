/**
 * `nocturne <command> ...`: the command-line front end. Every failure is one line on stderr
 * (with the usage for bad arguments) and an exit code; never a stack trace unless NOCTURNE_DEBUG=1.
 */
import { UsageError } from './options.ts';

export const USAGE = `nocturne — composes classical piano music

usage:
  nocturne compose <composer> <notes> [--seed FILE.mid] [--temperature T] [--top-p P]
                   [--random-seed S] [--format wav|ogg|mp3|opus] [--out DIR] [--model DIR] [--json]
  nocturne check FILE...
  nocturne train --data DIR --out models/NAME [--composers a,b] [--epochs N] [--resume]
  nocturne evaluate --model DIR --data DIR [--json]
  nocturne average --out DIR MODEL MODEL [MODEL...]   (weight averaging of fine-tuned runs)
  nocturne styles [--model DIR]
  nocturne bench [--json]
  nocturne worker        (with REDIS_URL: composes the jobs of any number of bots)

Run \`nocturne <command> --help\` for a command's options.`;

type Runner = (argv: string[], log: (line: string) => void) => Promise<number>;

const commands: Record<string, () => Promise<{ run: Runner; usage: string }>> = {
  train: async () => {
    const m = await import('./train.ts');
    return { run: m.runTrain, usage: m.TRAIN_USAGE };
  },
  check: async () => {
    const m = await import('../midi/check.ts');
    return { run: (argv, log) => m.runCheck(argv, log), usage: 'usage: nocturne check FILE...' };
  },
  compose: async () => {
    const m = await import('./compose.ts');
    return { run: m.runCompose, usage: m.COMPOSE_USAGE };
  },
  styles: async () => {
    const m = await import('./compose.ts');
    return { run: m.runStyles, usage: 'usage: nocturne styles [--model DIR]' };
  },
  evaluate: async () => {
    const m = await import('./evaluate.ts');
    return { run: m.runEvaluate, usage: m.EVALUATE_USAGE };
  },
  average: async () => {
    const m = await import('./average.ts');
    return { run: m.runAverage, usage: m.AVERAGE_USAGE };
  },
  bench: async () => {
    const m = await import('./bench.ts');
    return { run: m.runBench, usage: m.BENCH_USAGE };
  },
  worker: async () => {
    const m = await import('../app/worker.ts');
    return { run: m.runWorker, usage: m.WORKER_USAGE };
  },
  start: async () => {
    const m = await import('../app/start.ts');
    return { run: m.runStart, usage: m.START_USAGE };
  },
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const log = (line: string) => process.stderr.write(`${line}\n`);
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return name ? 0 : 2;
  }
  const load = commands[name];
  if (!load) {
    log(`nocturne: unknown command ${JSON.stringify(name)}\n\n${USAGE}`);
    return 2;
  }
  const command = await load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${command.usage}\n`);
    return 0;
  }
  try {
    return await command.run(rest, log);
  } catch (e) {
    if (process.env.NOCTURNE_DEBUG === '1') console.error(e);
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      log(`nocturne ${name}: ${(e as Error).message}\n\n${e instanceof UsageError && e.usage ? e.usage : command.usage}`);
      return 2;
    }
    log(`nocturne ${name}: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

const isEntry = process.argv[1] && /(?:cli[\\/]main\.ts|bin[\\/]nocturne(\.js)?)$/.test(process.argv[1]);
if (isEntry) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`nocturne: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
