/**
 * The community commands' pure parts: configuration (NOCTURNE_COMMUNITY, moderator ids, the
 * community settings joining the one start-up message), typed options (several files, a reason
 * of several words), Discord visibility of moderator commands, and the verdict messages.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { COMMANDS } from '../commands/index.ts';
import { contributionLine } from '../commands/contribute.ts';
import { discordCommandJson } from '../src/adapters/discord/discord.ts';
import { slackUsage } from '../src/adapters/slack/slack.ts';
import { retrainMessage } from '../commands/shared/community.ts';
import { checkOptions, parseOptionWords, splitWords } from '../src/chat/options.ts';
import type { ContributionRecord } from '../src/community/contributions.ts';
import type { RetrainOutcome } from '../src/community/retrain.ts';
import { ConfigError, loadConfig } from '../src/app/config.ts';
import { createCommunityWorld, type CommunityWorld } from './support/communityFixture.ts';

const spec = (name: string) => COMMANDS.find((c) => c.name === name)!;
let world: CommunityWorld;

before(async () => {
  world = await createCommunityWorld();
});
after(async () => {
  await rm(world.root, { recursive: true, force: true });
});

test('configuration: auto runs the loop when the corpus is there, and says why not when it is not', () => {
  const on = loadConfig({ ...world.env }, world.root);
  assert.equal(on.community?.datasetDir, world.datasetDir);
  assert.equal(on.community?.retrain.schedule, '0 4 * * 0', 'weekly by default');
  // No NOCTURNE_DATASET_DIR and nothing at the default path: compose only, with the reason for the log.
  // The default is ../shared/... from the working folder: start one level inside the world so
  // that it cannot exist, whatever sits beside the system's temp folder.
  const { NOCTURNE_DATASET_DIR: _d, ...withoutDataset } = world.env;
  const auto = loadConfig(withoutDataset, join(world.root, 'nested'));
  assert.equal(auto.community, undefined);
  assert.match(auto.communityNote!, /contributions and retraining are off: no training corpus at .*shared\/datasets\/piano-midi-de \(set NOCTURNE_DATASET_DIR/);
  const off = loadConfig({ ...world.env, NOCTURNE_COMMUNITY: 'off', NOCTURNE_RETRAIN_SCHEDULE: 'whenever' }, world.root);
  assert.equal(off.community, undefined, 'off: its settings are not even read');
  const noSchedule = loadConfig({ ...world.env, NOCTURNE_RETRAIN_SCHEDULE: 'off' }, world.root);
  assert.equal(noSchedule.community?.retrain.schedule, null);
});

test('configuration: community problems join the one start-up message; the model folder is named once', () => {
  const { NOCTURNE_DATASET_DIR: _d, ...withoutDataset } = world.env;
  assert.throws(
    () =>
      loadConfig(
        {
          ...withoutDataset,
          NOCTURNE_COMMUNITY: 'on',
          NOCTURNE_MODEL_DIR: `${world.root}/nowhere`,
          NOCTURNE_BACKEND: 'gpu',
          NOCTURNE_RETRAIN_SCHEDULE: 'every sunday',
          NOCTURNE_MODERATOR_ROLE_IDS: '820000000000000001, admins',
          NOCTURNE_SLACK_MODERATORS: 'U0000MOD01,clara',
          NOCTURNE_DISCORD_MODERATOR_CHANNEL: '#moderators',
        },
        join(world.root, 'nested'),
      ),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      const text = e.problems.join('\n');
      assert.match(text, /NOCTURNE_BACKEND must be one of/);
      assert.match(text, /NOCTURNE_RETRAIN_SCHEDULE must be a cron expression .* got "every sunday"/);
      assert.match(text, /NOCTURNE_DATASET_DIR: .* is not a folder/);
      assert.match(text, /NOCTURNE_MODERATOR_ROLE_IDS must be Discord role ids .* got "admins"/);
      assert.match(text, /NOCTURNE_SLACK_MODERATORS must be Slack user ids .* got "clara"/);
      assert.match(text, /NOCTURNE_DISCORD_MODERATOR_CHANNEL must be one Discord channel id/);
      assert.equal(e.problems.filter((p) => p.startsWith('NOCTURNE_MODEL_DIR')).length, 1);
      assert.equal(e.problems.length, 7, text);
      return true;
    },
  );
  assert.throws(() => loadConfig({ ...world.env, NOCTURNE_COMMUNITY: 'maybe' }, world.root), /NOCTURNE_COMMUNITY must be auto, on or off/);
});

test('configuration: moderators and moderator channels reach the platform settings', () => {
  const c = loadConfig(
    {
      ...world.env,
      DISCORD_TOKEN: 'MTAw.abc.def',
      NOCTURNE_MODERATOR_ROLE_IDS: '820000000000000001,820000000000000002',
      NOCTURNE_DISCORD_MODERATOR_CHANNEL: '830000000000000001',
      SLACK_BOT_TOKEN: 'xoxb-1',
      SLACK_APP_TOKEN: 'xapp-1',
      NOCTURNE_SLACK_MODERATORS: 'U0000MOD01 W0000MOD02',
      NOCTURNE_SLACK_MODERATOR_CHANNEL: 'C0000MODS1',
    },
    world.root,
  );
  assert.deepEqual(c.discord?.moderatorRoleIds, ['820000000000000001', '820000000000000002']);
  assert.equal(c.discord?.moderatorChannelId, '830000000000000001');
  assert.deepEqual(c.slack?.moderators, ['U0000MOD01', 'W0000MOD02']);
  assert.equal(c.slack?.moderatorChannelId, 'C0000MODS1');
});

test('typed options: several files then a label; a reason takes the rest of the line', () => {
  const contribute = spec('contribute');
  const typed = parseOptionWords(contribute, splitWords('a.mid songs/b.MID "Clara Schumann"'), true);
  assert.deepEqual(typed, { raw: { midi: 'a.mid', midi2: 'songs/b.MID', label: 'Clara Schumann' }, problems: [] });
  assert.deepEqual(parseOptionWords(contribute, ['chopin']).raw, { label: 'chopin' }, 'Slack: the files come from the message');
  const contribution = spec('contribution');
  const words = parseOptionWords(contribution, splitWords('reject cmg3abc12 not a piano piece, sorry'));
  assert.deepEqual(words, { raw: { action: 'reject', id: 'cmg3abc12', reason: 'not a piano piece, sorry' }, problems: [] });
  assert.deepEqual(checkOptions(contribution, words.raw).problems, []);
  assert.deepEqual(checkOptions(contribution, { action: 'delete', id: 'cmg3abc12' }).problems, ['action must be one of reject, restore, got "delete"']);
  assert.deepEqual(parseOptionWords(spec('rollback'), ['r3']).raw, { version: 'r3' });
  assert.match(slackUsage(contribute), /^ {4}midi: a solo-piano MIDI file .*\(share the file with the bot in a message that starts with "contribute"\)$/m);
  assert.match(slackUsage(contribute), /^ {4}label \(optional\): the composer or style of these pieces, e\.g\. Chopin$/m);
});

test('Discord: moderator commands need Manage Server unless moderator roles are configured', () => {
  assert.equal(discordCommandJson(spec('retrain')).default_member_permissions, '32');
  assert.equal(discordCommandJson(spec('retrain'), { moderatorRoles: true }).default_member_permissions, undefined);
  assert.equal(discordCommandJson(spec('settings'), { moderatorRoles: true }).default_member_permissions, undefined, 'members set their own (for:me)');
  assert.equal(discordCommandJson(spec('contribute')).default_member_permissions, undefined);
  for (const c of COMMANDS) assert.ok(c.description.length <= 100 && c.options.every((o) => o.description.length <= 100), c.name);
  assert.deepEqual(COMMANDS.filter((c) => c.community).map((c) => c.name), ['contribute', 'models', 'contributions', 'contribution', 'drift', 'retrain', 'rollback']);
  assert.deepEqual(COMMANDS.filter((c) => c.permission === 'moderator').map((c) => c.name), ['contributions', 'contribution', 'drift', 'retrain', 'rollback']);
});

test('verdict lines: accepted, flagged and refused files; retraining outcomes', () => {
  const record = { id: 'cabc12345', filename: 'a.mid', label: 'Chopin', notes: 120, similarity: 0.5612, holdout: false } as ContributionRecord;
  assert.equal(contributionLine({ status: 'accepted', record, message: '' }, 'a.mid', 0.35), 'a.mid: accepted as cabc12345 (Chopin), 120 notes, similarity to the training corpus 0.56');
  assert.equal(
    contributionLine({ status: 'flagged', record: { ...record, similarity: 0.2 }, message: '' }, 'a.mid', 0.35),
    'a.mid: flagged for a moderator, similarity to the training corpus 0.20 is below 0.35; kept as cabc12345 and used once a moderator restores it',
  );
  assert.equal(contributionLine({ status: 'refused', reason: 'unreadable', message: 'b.txt: not a MIDI file' }, 'b.txt', 0.35), 'b.txt: refused, unreadable: not a MIDI file');
  assert.equal(contributionLine({ status: 'refused', reason: 'limit', message: 'c.mid: you have reached the limit' }, 'c.mid', 0.35), 'c.mid: refused, you have reached the limit');

  const base: RetrainOutcome = { runId: 'run1', status: 'skipped', reason: 'nothing to do: no new accepted contributions', servingBefore: 'tiny-3', servingAfter: 'tiny-3', contributionsUsed: 0, heldBack: 0, newComposers: [], waitingLabels: [], seconds: 3 };
  assert.deepEqual(retrainMessage(base), { title: 'Retraining: skipped', lines: ['nothing to do: no new accepted contributions', 'serving: tiny-3 (unchanged)', 'run run1, 3 s'] });
  const scores = (nll: number, sim: number) => ({ version: 'x', nll, validationPieces: 24, validationNotes: 71936, outputSimilarity: sim, outputDrift: {} });
  const rejected = retrainMessage(
    { ...base, status: 'rejected', reason: 'r2 not promoted, it failed the gate: worse NLL', version: 'r2', before: scores(4.1528, 0.751), after: scores(4.3, 0.649), contributionsUsed: 10, heldBack: 1, waitingLabels: [{ label: 'Satie', pieces: 1 }], curvePng: '/d/models/r2/training-curve.png', metrics: { valNll: 4.3 }, seconds: 308 },
    'Scheduled retraining',
  );
  assert.equal(rejected.title, 'Scheduled retraining: r2 not promoted');
  assert.deepEqual(rejected.lines, [
    'r2 not promoted, it failed the gate: worse NLL',
    'validation NLL (nats per note, lower is better): 4.1528 → 4.3000 on 24 pieces (71936 notes)',
    'similarity of generated pieces to the corpus: 0.751 → 0.649',
    'data: 10 contributions trained on, 1 held back for validation; trained as "any" until they have enough pieces: Satie (1)',
    'r2 training metrics: valNll 4.3000',
    'serving: tiny-3 (unchanged)',
    'kept as r2; /rollback r2 would serve it anyway',
    'run run1, 5 min',
  ]);
  assert.deepEqual(rejected.files, [{ path: '/d/models/r2/training-curve.png', name: 'training-curve-r2.png', contentType: 'image/png' }]);
  const promoted = retrainMessage({ ...base, status: 'promoted', reason: 'r2 promoted', version: 'r2', servingAfter: 'r2' }, 'Retraining', { ok: false, version: 'r2', error: 'bad weights' });
  assert.ok(promoted.lines.includes('serving: tiny-3 → r2'));
  assert.ok(promoted.lines.includes('but the bot could not load it (bad weights) and keeps composing with the previous model'));
});
