/**
 * The community loop from chat, end to end: `startBot` from a loadConfig'd environment (the tiny
 * community world: 9 corpus pieces, the tiny model as the shipped one) with the real discord.js 14
 * client and the real @slack/bolt 5 app (Socket Mode) against the fakes in src/testing, plus the
 * terminal adapter in-process. Covers: moderator refusals on both platforms, contributions
 * (accepted, duplicate, drum file, flagged), moderation, models, a real retraining run with
 * progress edits, its verdict and the moderator-channel notice, the engine switch on promotion
 * and rollback, drift with its chart, "busy", and the cron schedule's notice.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { TerminalAdapter } from '../src/adapters/terminal/terminal.ts';
import type { Bot } from '../src/chat/bot.ts';
import type { CommunityService } from '../src/chat/community.ts';
import { startBot } from '../src/app/start.ts';
import { Community } from '../src/community/community.ts';
import { acquireRetrainLock, newLockOwner, readRetrainLock, releaseRetrainLock } from '../src/community/lock.ts';
import type { RunRecord } from '../src/community/retrain.ts';
import { loadConfig } from '../src/app/config.ts';
import { FakeDiscord, MANAGE_GUILD, type RecordedCall } from '../src/testing/discordServer.ts';
import { FakeSlack, fileShareEventBody, slashCommandPayload, type SlackCall } from '../src/testing/slackApi.ts';
import { FAST_TEMPO_BPM, drumMidi, isPng, writeTemp } from './support/chatBot.ts';
import { createCommunityWorld, datasetBytes, NEW_PIECES, outlandishPiece, resaved, TINY_CORPUS, type CommunityWorld } from './support/communityFixture.ts';

const GUILD = '800000000000000001';
const ROLE = '820000000000000001';
const MOD_CHANNEL = '830000000000000001';
const SLACK_MOD = 'U0000MOD01';
const SLACK_MOD_CHANNEL = 'C0000MODS1';
const member = { user: { id: '700000000000000301', username: 'dora' } };
const roleModerator = { user: { id: '700000000000000302', username: 'mona' }, roles: [ROLE] };
const manager = { user: { id: '700000000000000303', username: 'max' }, permissions: MANAGE_GUILD };

let world: CommunityWorld;
let discord: FakeDiscord;
let slack: FakeSlack;
let running: { bot: Bot; community?: CommunityService; stop: () => Promise<void> };
let service: CommunityService;
const logs: string[] = [];
const log = (line: string) => {
  logs.push(line);
  if (process.env.NOCTURNE_TEST_LOG === '1') process.stderr.write(`[bot] ${line}\n`);
};

before(async () => {
  discord = await FakeDiscord.start();
  slack = await FakeSlack.start();
  world = await createCommunityWorld();
  // The untrained model's notes are far apart: a fast tempo keeps its audio short (see chatBot.ts).
  const specPath = join(world.modelDir, 'model.json');
  const spec = JSON.parse(readFileSync(specPath, 'utf8'));
  for (const c of spec.composers) c.tempoBpm = FAST_TEMPO_BPM;
  writeFileSync(specPath, `${JSON.stringify(spec, null, 2)}\n`);
  const config = loadConfig(
    {
      ...world.env,
      NOCTURNE_OUT_DIR: join(world.root, 'out'),
      NOCTURNE_BATCH_WINDOW_MS: '20',
      NOCTURNE_USER_PER_MINUTE: '100',
      NOCTURNE_SHUTDOWN_GRACE_S: '10',
      DISCORD_TOKEN: 'MTAw.fake.token',
      DISCORD_API_BASE: discord.apiBase,
      DISCORD_ATTACHMENT_HOSTS: '127.0.0.1',
      DISCORD_GUILD_ID: GUILD,
      NOCTURNE_MODERATOR_ROLE_IDS: ROLE,
      NOCTURNE_DISCORD_MODERATOR_CHANNEL: MOD_CHANNEL,
      SLACK_BOT_TOKEN: 'xoxb-fake-token',
      SLACK_APP_TOKEN: 'xapp-fake-token',
      SLACK_API_URL: slack.apiUrl,
      SLACK_FILE_HOSTS: '127.0.0.1',
      NOCTURNE_SLACK_MODERATORS: SLACK_MOD,
      NOCTURNE_SLACK_MODERATOR_CHANNEL: SLACK_MOD_CHANNEL,
      // Not due during the test: the test fires it by hand.
      NOCTURNE_RETRAIN_SCHEDULE: '0 4 1 1 *',
      NOCTURNE_RETRAIN_EPOCHS: '1',
      // Any candidate passes, so the run's verdict is known in advance (the gate has its own tests).
      NOCTURNE_GATE_NLL_TOLERANCE: '10',
      NOCTURNE_GATE_DRIFT_TOLERANCE: '1',
    },
    world.root,
  );
  assert.ok(config.community, 'the community loop is on');
  const started = await startBot(config, log);
  assert.ok(started.bot, 'not sharded: the bot runs in this process');
  running = { ...started, bot: started.bot };
  service = running.community!;
  assert.ok(service);
});

after(async () => {
  await running?.stop();
  await discord?.close();
  await slack?.close();
  if (world) await rm(world.root, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Helpers

function embedOf(call: RecordedCall): { title: string; description: string; image?: { url: string } } {
  return call.body?.data?.embeds?.[0] ?? call.body?.embeds?.[0];
}

function ephemeralText(call: RecordedCall): string {
  return call.body?.data?.content ?? call.body?.content ?? '';
}

async function discordInfo(name: string, options: Parameters<FakeDiscord['command']>[1], who: Parameters<FakeDiscord['command']>[2], timeoutMs = 30_000) {
  const { token } = discord.command(name, options, who);
  const outcome = await discord.waitForOutcome(token, timeoutMs);
  return { token, ...outcome, embed: embedOf(outcome.call), text: ephemeralText(outcome.call) };
}

function attach(name: string, bytes: Uint8Array) {
  return { attachment: { filename: name, size: bytes.length, url: discord.hostFile(name, bytes, 'audio/midi') } };
}

let slackChannels = 0;
async function slackCommand(text: string, user: string): Promise<SlackCall> {
  const responseUrl = slack.responseUrl();
  const channel = `C${String(++slackChannels).padStart(8, '0')}`;
  await slack.sendEnvelope('slash_commands', slashCommandPayload('/nocturne', text, { user, channel, responseUrl }));
  return slack.waitFor((c) => c.method === 'respond' && c.params.__url === responseUrl, 20_000, `a response to /nocturne ${text}`);
}

// ---------------------------------------------------------------------------------------------

test('the community commands are registered; moderator ones visible to all when a moderator role is set', async () => {
  const put = await discord.waitFor((c) => c.method === 'PUT' && c.path.endsWith(`/guilds/${GUILD}/commands`));
  const byName = new Map((put.body as any[]).map((c) => [c.name, c]));
  for (const name of ['contribute', 'contributions', 'contribution', 'drift', 'retrain', 'models', 'rollback']) assert.ok(byName.has(name), name);
  const contribute = byName.get('contribute');
  assert.deepEqual(contribute.options.map((o: any) => [o.name, o.type]), [['midi', 11], ['label', 3], ['midi2', 11], ['midi3', 11], ['midi4', 11], ['midi5', 11]]);
  assert.equal(byName.get('retrain').default_member_permissions, undefined, 'role holders must see it');
  assert.equal(byName.get('settings').default_member_permissions, undefined, 'members set their own (for:me)');
  assert.ok(logs.some((l) => /community: serving model tiny-3 from .*data\/models\/tiny-3/.test(l)), logs.join('\n'));
  assert.ok(logs.some((l) => /retraining scheduled "0 4 1 1 \*" \(UTC\)/.test(l)));
});

test('non-moderators are refused retrain, rollback and contribution reject, on Discord and on Slack', async () => {
  const asks: [string, Parameters<FakeDiscord['command']>[1]][] = [
    ['retrain', {}],
    ['rollback', {}],
    ['contribution', { action: 'reject', id: 'c0000000000' }],
  ];
  for (const [name, options] of asks) {
    const r = await discordInfo(name, options, member);
    assert.equal(r.kind, 'error', name);
    assert.equal(r.text, `⚠️ /${name} is for moderators only (people with the Manage Server permission or a moderator role)`);
  }
  // Manage Server in a DM counts for nothing: the model is shared by every server.
  const dm = await discordInfo('retrain', {}, { ...manager, guildId: null });
  assert.match(dm.text, /is for moderators only/);
  for (const text of ['retrain', 'rollback', 'contribution reject c0000000000 spam']) {
    const r = await slackCommand(text, 'U0000USER1');
    assert.equal(r.params.response_type, 'ephemeral');
    assert.match(r.params.text, new RegExp(`^⚠️ /${text.split(' ')[0]} is for moderators only \\(the Slack users listed in NOCTURNE_SLACK_MODERATORS\\)$`));
  }
  const status = await service.community.retrainStatus();
  assert.equal(status.last, undefined, 'no run was started');
  assert.equal(service.community.registry.serving, 'tiny-3');
});

let acceptedId = '';

test('contribute: one verdict line per file (accepted, duplicate of a training piece, drum file); then a duplicate of a contribution', async () => {
  const good = await datasetBytes(NEW_PIECES[0]);
  const copy = resaved(await datasetBytes(TINY_CORPUS[0]));
  const r = await discordInfo('contribute', { midi: attach('sonatina.mid', good), label: 'clementi', midi2: attach('prelude.mid', copy), midi3: attach('drums.mid', drumMidi()) }, roleModerator);
  assert.equal(r.kind, 'info', JSON.stringify(r.call.body));
  assert.equal(r.embed.title, 'Contributions: 1 accepted, 2 refused');
  const lines = r.embed.description.split('\n');
  assert.match(lines[0], /^sonatina\.mid: accepted as (c[0-9a-z]+) \(clementi\), \d+ notes, similarity to the training corpus 0\.\d\d$/);
  acceptedId = /accepted as (c[0-9a-z]+)/.exec(lines[0])![1];
  assert.match(lines[1], /^prelude\.mid: refused, duplicate: the same music as the training piece Chopin\/chpn-p20\.mid$/);
  assert.match(lines[2], /^drums\.mid: refused, unacceptable: drums on channel 10/);
  assert.match(lines[3], /Accepted pieces are used at the next retraining/);

  const again = await discordInfo('contribute', { midi: attach('again.mid', good) }, member);
  assert.equal(again.kind, 'error', 'nothing kept: a private answer');
  assert.match(again.text, new RegExp(`^⚠️ again\\.mid: refused, duplicate: the same music as contribution ${acceptedId} \\(sonatina\\.mid\\)$`));

  // Slack: files shared in a message that starts with "contribute".
  const haydn = await datasetBytes(NEW_PIECES[2]);
  const channel = 'C0SHARE001';
  const body = JSON.parse(fileShareEventBody('contribute Haydn', [{ name: 'haydn.mid', size: haydn.length, url: slack.hostFile('haydn.mid', haydn) }], { channel, user: 'U0000USER2' }));
  await slack.sendEnvelope('events_api', body);
  const verdict = await slack.waitFor((c) => c.method === 'chat.postEphemeral' && c.params.channel === channel, 20_000, 'the verdict');
  assert.match(verdict.params.text, /^Contribution: 1 accepted\nhaydn\.mid: accepted as c[0-9a-z]+ \(Haydn\)/);
  assert.equal(verdict.params.user, 'U0000USER2');
  // A slash command cannot carry files: it says how instead.
  const slash = await slackCommand('contribute Haydn', 'U0000USER2');
  assert.match(slash.params.text, /share your MIDI files with me in a message that starts with "contribute"/);
});

test('the terminal: paths and a label; a piece unlike the corpus is flagged for a moderator', async () => {
  const output = new PassThrough();
  let printed = '';
  output.on('data', (d) => (printed += d));
  const terminal = new TerminalAdapter(running.bot, { input: new PassThrough(), output, interactive: false, log });
  const strange = writeTemp(world.root, 'strange.mid', outlandishPiece());
  const prelude = writeTemp(world.root, 'p6.mid', await datasetBytes(NEW_PIECES[4]));
  await terminal.runLine(`/contribute ${strange} ${prelude} chopin`);
  assert.match(printed, /Contributions: 1 accepted, 1 flagged/);
  assert.match(printed, /strange\.mid: flagged for a moderator, similarity to the training corpus 0\.\d\d is below 0\.35; kept as c[0-9a-z]+/);
  assert.match(printed, /p6\.mid: accepted as c[0-9a-z]+ \(Chopin\)/, 'the label is spelt like the known composer');
});

test('moderators list, reject and restore contributions (Slack reason of several words, Discord restore)', async () => {
  const list = await discordInfo('contributions', {}, roleModerator);
  assert.equal(list.kind, 'info');
  assert.match(list.embed.title, /^Contributions: 4 \(3 accepted, 1 flagged, 0 rejected\)$/);
  assert.match(list.embed.description, new RegExp(`${acceptedId} · accepted · similarity 0\\.\\d\\d · sonatina\\.mid \\(clementi\\) · \\d+ notes · by 700000000000000302 on Discord`));
  const flagged = await discordInfo('contributions', { status: 'flagged' }, manager);
  assert.match(flagged.embed.description, /^c[0-9a-z]+ · flagged · similarity 0\.\d\d · strange\.mid \(Chopin\)/);

  const rejected = await slackCommand(`contribution reject ${acceptedId} not really a piano piece`, SLACK_MOD);
  assert.match(rejected.params.text, new RegExp(`^Contribution ${acceptedId} rejected\\n`));
  assert.match(rejected.params.text, /reason: not really a piano piece/);
  const shown = await slackCommand('contributions rejected', SLACK_MOD);
  assert.match(shown.params.text, new RegExp(`${acceptedId} · rejected .* rejected by clara \\(Slack\\): not really a piano piece`));
  const twice = await slackCommand(`contribution reject ${acceptedId}`, SLACK_MOD);
  assert.match(twice.params.text, new RegExp(`^⚠️ contribution ${acceptedId} is already rejected`));

  const restored = await discordInfo('contribution', { action: 'restore', id: acceptedId }, roleModerator);
  assert.equal(restored.embed.title, `Contribution ${acceptedId} restored`);
  assert.equal((await service.community.listContributions({ status: 'accepted' })).length, 3);
});

let promoted = '';

test('models; a moderator retrains: progress edits, the verdict with before/after and the curve, the moderator channels, the bot serves it', async () => {
  const models = await discordInfo('models', {}, member);
  assert.equal(models.embed.title, 'Model versions: 1, serving tiny-3');
  assert.match(models.embed.description, /^▶ tiny-3 \(serving\) · the shipped model · valNll 10 · 2 composers/);

  const r = await discordInfo('retrain', { epochs: 1 }, manager, 90_000);
  assert.equal(r.kind, 'result', `a verdict with the curve attached: ${JSON.stringify(r.call.body)}`);
  const progress = discord.callsFor(r.token).filter((c) => c.method === 'PATCH' && c.files.length === 0).map((c) => c.body.content as string);
  assert.ok(progress.some((p) => /^⏳ retraining \(run [^)]+\), training: /.test(p)), progress.join('\n'));
  assert.ok(progress.some((p) => /evaluating/.test(p)), progress.join('\n'));
  const title = /^Retraining: (r1-\S+) promoted$/.exec(r.embed.title);
  assert.ok(title, r.embed.title);
  promoted = title[1];
  assert.match(r.embed.description, /validation NLL \(nats per note, lower is better\): \d+\.\d{4} → \d+\.\d{4} on \d+ pieces/);
  assert.match(r.embed.description, /similarity of generated pieces to the corpus: \d\.\d{3} → \d\.\d{3}/);
  assert.match(r.embed.description, /data: 3 contributions trained on, 0 held back for validation/);
  assert.ok(r.embed.description.includes(`serving: tiny-3 → ${promoted}`));
  assert.ok(r.embed.description.includes(`the bot composes with ${promoted} from now on; /rollback undoes it`));
  const curve = r.call.files.find((f) => f.name === `training-curve-${promoted}.png`);
  assert.ok(curve && isPng(curve.bytes));
  assert.equal(r.embed.image?.url, `attachment://training-curve-${promoted}.png`);

  const notice = await discord.waitFor((c) => c.method === 'POST' && c.path === `/channels/${MOD_CHANNEL}/messages`, 10_000, 'the moderator channel notice');
  assert.equal(notice.body.embeds[0].title, `Retraining: ${promoted} promoted`);
  assert.match(notice.body.embeds[0].description, /^started by max \(Discord\)\n/);
  assert.deepEqual(notice.body.allowed_mentions, { parse: [] });
  assert.ok(notice.files.some((f) => isPng(f.bytes)));
  const slackNotice = await slack.waitFor((c) => c.method === 'chat.postMessage' && c.params.channel === SLACK_MOD_CHANNEL, 10_000, 'the Slack moderator notice');
  assert.match(slackNotice.params.text, new RegExp(`^Retraining: ${promoted} promoted\\n`));
  await slack.waitFor((c) => c.method === 'files.completeUploadExternal' && c.params.channel_id === SLACK_MOD_CHANNEL, 10_000, 'the curve in the Slack moderator channel');

  const status = await discordInfo('status', {}, member);
  assert.match(status.embed.description, new RegExp(`Model: ${promoted}, 2 composers`));
  const after = await slackCommand('models', 'U0000USER1');
  assert.match(after.params.text, new RegExp(`^Model versions: 2, serving ${promoted}\\n▶ ${promoted} \\(serving\\) · passed the gate \\(validation NLL`));
  assert.match(after.params.text, /· tiny-3 · the shipped model/);
});

test('"busy" while another process holds the retraining lock', async () => {
  const store = service.community.store;
  assert.equal((await acquireRetrainLock(store, newLockOwner('someone-else', { trigger: 'moderator', requestedBy: 'mod2' }), 60_000)).acquired, true);
  try {
    const r = await discordInfo('retrain', {}, roleModerator);
    assert.equal(r.kind, 'error');
    assert.match(r.text, /^⚠️ a retraining run is already in progress \(run someone-else, moderator by mod2 at .*\); try again when it has finished$/);
  } finally {
    await releaseRetrainLock(store, 'someone-else');
  }
});

test('rollback switches the serving model, and the next /compose reports that version; drift shows the piece', async () => {
  const r = await discordInfo('rollback', {}, roleModerator);
  assert.equal(r.kind, 'info', JSON.stringify(r.call.body));
  assert.equal(r.embed.title, 'Now serving tiny-3');
  assert.match(r.embed.description, new RegExp(`^was ${promoted}\\nrollback from ${promoted} by mona \\(Discord\\)\\n/compose uses tiny-3 from now on`));
  const notice = await discord.waitFor((c) => c.method === 'POST' && c.path === `/channels/${MOD_CHANNEL}/messages` && c.body.embeds[0].title === 'Rollback: now serving tiny-3', 10_000, 'the rollback notice');
  assert.ok(notice);

  const piece = await discordInfo('compose', { composer: 'chopin', notes: 16 }, member);
  assert.equal(piece.kind, 'result');
  assert.equal(piece.call.body.embeds[0].fields.find((f: any) => f.name === 'Model').value, 'tiny-3');

  const unknown = await discordInfo('rollback', { version: 'nope' }, roleModerator);
  assert.match(unknown.text, /^⚠️ no model version "nope"; known: .*; \/models lists the versions$/);

  // onPiece recorded the piece for output drift.
  const deadline = Date.now() + 10_000;
  while ((await service.community.drift.outputSamples()).length === 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
  const drift = await discordInfo('drift', {}, roleModerator);
  assert.equal(drift.kind, 'result', 'the numbers with the chart attached');
  assert.equal(drift.embed.title, 'Drift: similarity to the training corpus');
  assert.match(drift.embed.description, /contributions: 4 \(3 accepted, 1 flagged, 0 rejected\)/);
  assert.match(drift.embed.description, /contribution pool: similarity 0\.\d\d \(pitch/);
  assert.match(drift.embed.description, /generated outputs \(latest 1\): similarity \d\.\d\d/);
  assert.ok(isPng(drift.call.files.find((f) => f.name === 'drift.png')!.bytes));
  const refused = await discordInfo('drift', {}, member);
  assert.match(refused.text, /is for moderators only/);
});

test('the cron schedule runs the same retraining and posts its outcome to the moderator channels', async () => {
  const before = discord.calls.length;
  await service.schedule!.task.execute();
  const notice = await discord.waitFor((c) => discord.calls.indexOf(c) >= before && c.method === 'POST' && c.path === `/channels/${MOD_CHANNEL}/messages`, 30_000, 'the schedule notice');
  assert.match(notice.body.embeds[0].title, /^Scheduled retraining: r2-\S+ promoted$/, "new contributions since tiny-3 and a lenient gate");
  assert.ok(logs.some((l) => /^moderators: Scheduled retraining: /.test(l)), 'logged as well');
  await slack.waitFor((c) => c.method === 'chat.postMessage' && c.params.channel === SLACK_MOD_CHANNEL && /^Scheduled retraining: /.test(c.params.text), 10_000, 'the Slack schedule notice');
});

test('a change made by another process is seen by the watch, served, and announced to the moderators', async () => {
  const other = await Community.open(world.config);
  try {
    const change = await other.rollback(undefined, 'ops (cli)');
    assert.equal(change.to, 'tiny-3');
  } finally {
    await other.close();
  }
  const notice = await discord.waitFor((c) => c.method === 'POST' && c.path === `/channels/${MOD_CHANNEL}/messages` && c.body.embeds[0].title === 'Serving model changed: now tiny-3', 15_000, 'the notice of a foreign change');
  assert.match(notice.body.embeds[0].description, /rollback from r2-\S+ by ops \(cli\)\nthe bot composes with tiny-3 from now on$/);
  assert.equal(running.bot.model.version, 'tiny-3');
  // This process's own rollbacks were announced by their command, never as another's.
  assert.equal(discord.calls.filter((c) => c.path === `/channels/${MOD_CHANNEL}/messages` && /^Serving model changed/.test(c.body?.embeds?.[0]?.title ?? '')).length, 1);
});

test('npm start on the terminal: SIGTERM during a /retrain stops the run, leaves the serving model and exits 0', async () => {
  // A run that cannot end on its own before the signal: many epochs, no early stopping.
  const own = await createCommunityWorld({ NOCTURNE_RETRAIN_EPOCHS: '1000', NOCTURNE_RETRAIN_PATIENCE: '1000', NOCTURNE_RETRAIN_SCHEDULE: 'off' });
  try {
    const root = resolve(import.meta.dirname, '..');
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(DISCORD_|SLACK_|NOCTURNE_)/.test(k)));
    const child = spawn(join(root, 'node_modules', '.bin', 'tsx'), [join(root, 'src/cli/main.ts'), 'start'], { cwd: own.root, env: { ...clean, ...own.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
    child.stdin.write('/retrain force=yes\n'); // stdin stays open: the prompt keeps running
    const deadline = Date.now() + 60_000;
    while (!/retraining \(run \S+\), training: epoch/.test(stdout) && Date.now() < deadline && child.exitCode === null) await new Promise((res) => setTimeout(res, 100));
    assert.match(stdout, /retraining \(run \S+\), training: epoch/, `${stdout}\n${stderr}`);
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const code = await exited;
    clearTimeout(timer);
    assert.equal(code, 0, `${stdout}\n${stderr}`);
    assert.match(stderr, /stopping retraining run \S+ \(pid \d+\); nothing it made is used/);
    assert.match(stdout, /Retraining: failed\n {2}the retraining process was killed \(SIGKILL\) before finishing/);

    const community = await Community.open(own.config);
    try {
      assert.equal((await community.registry.current()).version, 'tiny-3', 'the serving model is unchanged');
      assert.equal((await readRetrainLock(community.store, 60_000))?.live ?? false, false, 'no live lock is left');
      const runs = (await community.store.list<RunRecord>('run:')).map((e) => e.value);
      assert.deepEqual(runs.map((r) => [r.trigger, r.requestedBy, r.state]), [['moderator', `${runs[0].requestedBy}`, 'interrupted']]);
      assert.match(runs[0].requestedBy!, / \(terminal\)$/);
    } finally {
      await community.close();
    }
  } finally {
    await rm(own.root, { recursive: true, force: true });
  }
});
