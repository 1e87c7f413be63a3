/**
 * Job ids are scoped to the server, workspace or DM that made them (src/jobs/tenant.ts). One bot,
 * driven through the real @slack/bolt app and the real discord.js client at once (against the
 * fakes in src/testing), as one process serving both platforms is: a Slack job, continued from an
 * uploaded seed, is not reachable by /show, /continue <id> or a button from a Discord guild nor
 * from another Slack workspace, each answered exactly as an unknown id, and its seed feeds no job
 * there; the same member (and the same workspace) still reaches it. A Discord button pressed in
 * another guild or a DM is refused too. Plus the tenant rules themselves, older records included.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Bot } from '../src/chat/bot.ts';
import { jobTenant, reachableBy, tenantOf } from '../src/jobs/tenant.ts';
import type { JobRecord, Requester } from '../src/jobs/types.ts';
import type { FakeDiscord, RecordedCall } from '../src/testing/discordServer.ts';
import { TEAM_ID, type FakeSlack, buttonBody, fileShareEventBody, postSigned, slashCommandBody, type SlackCall } from '../src/testing/slackApi.ts';
import { midiNoteCount, pianoMidi, type ChatFixture } from './support/chatBot.ts';
import { SLACK_SIGNING_SECRET, twoPlatforms, type TwoPlatforms } from './support/twoPlatforms.ts';

const OTHER_TEAM = 'T0000OTHER';
const GUILD_A = '800000000000000001';
const GUILD_B = '800000000000000222';
/** A well-formed id that no job has (checked below before it is used as "unknown"). */
const UNKNOWN = 'k3x9q2ab';

let slack: FakeSlack;
let discord: FakeDiscord;
let fixture: ChatFixture;
let bot: Bot;
let eventsUrl = '';
let platforms: TwoPlatforms | undefined;
let channelSeq = 0;

before(async () => {
  platforms = await twoPlatforms('tenants');
  ({ slack, discord, fixture, bot, eventsUrl } = platforms);
});

after(() => platforms?.stop());

function newChannel(): string {
  return `C${String(++channelSeq).padStart(8, '0')}`;
}

/** The fake's request bodies with another workspace's team id (the fake always writes TEAM_ID). */
function inTeam(body: string, team: string): string {
  return body.split(TEAM_ID).join(team);
}

async function slackPost(body: string, contentType: string): Promise<void> {
  const res = await postSigned(eventsUrl, body, contentType, SLACK_SIGNING_SECRET);
  assert.equal(res.status, 200, `Slack request answered ${res.status}: ${res.text}`);
}

/** A slash command in `team`; resolves to its response_url. */
async function slash(command: string, text: string, o: { team?: string; channel?: string; user?: string } = {}): Promise<string> {
  const responseUrl = slack.responseUrl();
  await slackPost(inTeam(slashCommandBody(command, text, { channel: o.channel ?? newChannel(), responseUrl, user: o.user }), o.team ?? TEAM_ID), 'application/x-www-form-urlencoded');
  return responseUrl;
}

/** A button press in `team`; resolves to its response_url. */
async function press(actionId: string, o: { team?: string; channel?: string; user?: string } = {}): Promise<string> {
  const responseUrl = slack.responseUrl();
  await slackPost(inTeam(buttonBody(actionId, { channel: o.channel ?? newChannel(), responseUrl, user: o.user }), o.team ?? TEAM_ID), 'application/x-www-form-urlencoded');
  return responseUrl;
}

function slackAnswer(responseUrl: string): Promise<SlackCall> {
  return slack.waitFor((c) => c.method === 'respond' && c.params.__url === responseUrl, 20_000, `a response to ${responseUrl}`);
}

async function slackResult(channel: string): Promise<{ job: string; comment: string; midi: Buffer }> {
  const complete = await slack.waitFor((c) => c.method === 'files.completeUploadExternal' && c.params.channel_id === channel, 30_000, `files uploaded to ${channel}`);
  const comment = String(complete.params.initial_comment);
  const midi = slack.uploadedFiles(complete).find((f) => f.filename.endsWith('.mid'))!.bytes;
  return { job: /\(job ([a-z2-9]{8})\)/.exec(comment)![1], comment, midi };
}

function discordText(call: RecordedCall): string {
  return call.body?.data?.content ?? call.body?.content ?? '';
}

async function discordError(token: string): Promise<string> {
  const outcome = await discord.waitForOutcome(token);
  assert.equal(outcome.kind, 'error', `expected a refusal, got ${JSON.stringify(outcome.call.body).slice(0, 300)}`);
  return discordText(outcome.call);
}

/** The jobs that copied a seed MIDI into their folder (every job that is fed a seed does). */
function seedCopies(): string[] {
  if (!existsSync(fixture.outDir)) return [];
  return readdirSync(fixture.outDir).filter((id) => existsSync(join(fixture.outDir, id, 'seed.mid')));
}

/** `text` with the job id in it replaced, so that the answers to two ids can be compared. */
const withoutId = (text: string, id: string) => text.split(id).join('<id>');

test('a Slack job is reachable only from its workspace: Discord and another workspace get "no such job", and its seed feeds nothing there', async () => {
  assert.equal(await bot.store.get(UNKNOWN), undefined);
  // Workspace A: continue an uploaded seed (a file shared with "continue").
  const seed = pianoMidi(24);
  const home = newChannel();
  await slackPost(fileShareEventBody('<@U0000BOT1> continue chopin 16', [{ name: 'mine.mid', size: seed.length, url: slack.hostFile('mine.mid', seed) }], { channel: home }), 'application/json');
  const made = await slackResult(home);
  const job = made.job;
  const record = (await bot.store.get(job))!;
  assert.equal(record.tenant, `slack:${TEAM_ID}`, 'the record carries its workspace');
  assert.ok(record.seedPath && readFileSync(record.seedPath).equals(seed), 'the uploaded seed is kept with the job');
  const seedsBefore = seedCopies();

  // Discord guild B: /show, /continue <id> and the buttons answer as for an id nobody made.
  const showB = discord.command('show', { job }, { guildId: GUILD_B });
  const showUnknown = discord.command('show', { job: UNKNOWN }, { guildId: GUILD_B });
  const contB = discord.command('continue', { job, notes: 16 }, { guildId: GUILD_B });
  const contUnknown = discord.command('continue', { job: UNKNOWN, notes: 16 }, { guildId: GUILD_B });
  const variationB = discord.button(`nocturne:variation:${job}`, { guildId: GUILD_B });
  const regenerateB = discord.button(`nocturne:regenerate:${job}`, { guildId: GUILD_B });
  const continueB = discord.button(`nocturne:continue:${job}`, { guildId: GUILD_B });
  const buttonUnknown = discord.button(`nocturne:variation:${UNKNOWN}`, { guildId: GUILD_B });
  const unknownShow = withoutId(await discordError(showUnknown.token), UNKNOWN);
  assert.match(unknownShow, /no piece with job id "<id>"/);
  assert.equal(withoutId(await discordError(showB.token), job), unknownShow);
  assert.equal(withoutId(await discordError(contB.token), job), withoutId(await discordError(contUnknown.token), UNKNOWN));
  const unknownButton = withoutId(await discordError(buttonUnknown.token), UNKNOWN);
  for (const b of [variationB, regenerateB, continueB]) assert.equal(withoutId(await discordError(b.token), job), unknownButton);
  // Nor from a Discord DM.
  const dm = discord.command('show', { job }, { guildId: null });
  assert.equal(withoutId(await discordError(dm.token), job), unknownShow);

  // Slack workspace C, the same user id and channel as the uploader's: refused alike.
  const showC = await slash('/show', job, { team: OTHER_TEAM, channel: home });
  const showCUnknown = await slash('/show', UNKNOWN, { team: OTHER_TEAM, channel: home });
  const contC = await slash('/continue', `${job} 16`, { team: OTHER_TEAM });
  const contCUnknown = await slash('/continue', `${UNKNOWN} 16`, { team: OTHER_TEAM });
  const regenC = await press(`nocturne:regenerate:${job}`, { team: OTHER_TEAM, channel: home });
  const regenCUnknown = await press(`nocturne:regenerate:${UNKNOWN}`, { team: OTHER_TEAM, channel: home });
  const textOf = async (url: string) => {
    const answer = await slackAnswer(url);
    assert.equal(answer.params.response_type, 'ephemeral');
    return String(answer.params.text);
  };
  assert.equal(withoutId(await textOf(showC), job), withoutId(await textOf(showCUnknown), UNKNOWN));
  assert.equal(withoutId(await textOf(contC), job), withoutId(await textOf(contCUnknown), UNKNOWN));
  assert.equal(withoutId(await textOf(regenC), job), withoutId(await textOf(regenCUnknown), UNKNOWN));

  // Nothing was composed for the refusals: no job copied the seed, nothing was posted elsewhere.
  assert.deepEqual(seedCopies(), seedsBefore, 'the uploaded seed fed no job in another tenant');
  assert.equal(slack.calls.filter((c) => c.method === 'files.completeUploadExternal' && String(c.params.initial_comment).includes(`from job ${job}`)).length, 0);

  // The same member in workspace A still reaches it: /show re-posts it, Variation reuses its seed.
  const again = newChannel();
  await slash('/show', job, { channel: again });
  const shown = await slackResult(again);
  assert.equal(shown.job, job);
  assert.ok(shown.midi.equals(made.midi), 'the same piece');
  const there = newChannel();
  await press(`nocturne:variation:${job}`, { channel: there });
  const variation = await slackResult(there);
  assert.match(variation.comment, /Variation in the style of Chopin, 16 notes/);
  assert.equal(midiNoteCount(variation.midi), 16);
  const varied = (await bot.store.get(variation.job))!;
  assert.equal(varied.tenant, `slack:${TEAM_ID}`);
  assert.ok(varied.seedPath && readFileSync(varied.seedPath).equals(seed), 'within its workspace, Variation continues the same seed');
});

test('Discord: a button pressed in another guild or a DM is refused; in the same guild it works for any member', async () => {
  const made = discord.command('compose', { composer: 'mozart', notes: 16, seed: 4321 }, { guildId: GUILD_A });
  const outcome = await discord.waitForOutcome(made.token);
  assert.equal(outcome.kind, 'result');
  const job = outcome.call.body.embeds[0].fields.find((f: any) => f.name === 'Job').value as string;
  assert.equal((await bot.store.get(job))!.tenant, `discord:${GUILD_A}`);

  const unknown = discord.button(`nocturne:regenerate:${UNKNOWN}`, { guildId: GUILD_B });
  const otherGuild = discord.button(`nocturne:regenerate:${job}`, { guildId: GUILD_B });
  const inDm = discord.button(`nocturne:regenerate:${job}`, { guildId: null });
  const refusal = withoutId(await discordError(unknown.token), UNKNOWN);
  assert.match(refusal, /job <id> is not in this bot's records/);
  assert.equal(withoutId(await discordError(otherGuild.token), job), refusal);
  assert.equal(withoutId(await discordError(inDm.token), job), refusal);
  // Slack's workspace with the guild's id is another tenant too.
  const fromSlack = await press(`nocturne:regenerate:${job}`, { team: GUILD_A });
  assert.equal(withoutId(String((await slackAnswer(fromSlack)).params.text), job), withoutId(String((await slackAnswer(await press(`nocturne:regenerate:${UNKNOWN}`, { team: GUILD_A }))).params.text), UNKNOWN));

  const sameGuild = discord.button(`nocturne:regenerate:${job}`, { guildId: GUILD_A, user: { id: '700000000000000077', username: 'another' } });
  const regenerated = await discord.waitForOutcome(sameGuild.token);
  assert.equal(regenerated.kind, 'result', 'another member of the same guild may press it');
  assert.equal(regenerated.call.body.embeds[0].fields.find((f: any) => f.name === 'Random seed').value, '4321');
});

test('tenants: server or workspace, a DM is its own user\'s, the terminal; older records take it from who asked', () => {
  const who = (o: Partial<Requester>): Requester => ({ platform: 'discord', userId: 'u1', userName: 'u', channelId: 'c1', isManager: false, ...o });
  assert.equal(tenantOf(who({ serverId: 'g1' })), 'discord:g1');
  assert.equal(tenantOf(who({})), 'discord:dm:u1');
  assert.equal(tenantOf(who({ platform: 'slack', serverId: 'T1', channelId: 'C123' })), 'slack:T1');
  assert.equal(tenantOf(who({ platform: 'slack', serverId: 'T1', channelId: 'D123' })), 'slack:dm:u1', 'a Slack DM is its user\'s');
  assert.equal(tenantOf(who({ platform: 'slack', channelId: 'C123' })), 'slack:dm:u1', 'no team id: only that user');
  assert.equal(tenantOf(who({ platform: 'terminal', channelId: 'terminal' })), 'terminal');

  const old = { who: who({ serverId: 'g1' }) } as JobRecord;
  assert.equal(jobTenant(old), 'discord:g1', 'a record from before the tenant field: its requester\'s server');
  assert.ok(reachableBy(old, who({ serverId: 'g1', userId: 'u2' })));
  assert.ok(!reachableBy(old, who({ serverId: 'g2' })));
  assert.ok(!reachableBy(old, who({ platform: 'slack', serverId: 'g1' })), 'the same id on another platform is another tenant');
  assert.ok(!reachableBy({ ...old, tenant: 'discord:g9' }, who({ serverId: 'g1' })), 'a stored tenant wins over who');
  assert.equal(jobTenant({} as JobRecord), undefined);
  assert.ok(!reachableBy({} as JobRecord, who({ serverId: 'g1' })), 'a record without a requester reaches nobody');
});
