/**
 * One bot served on Discord and Slack at once, as one process serving both platforms is: the real
 * discord.js client and the real @slack/bolt app (HTTP mode), each against its fake in
 * src/testing, on a chat fixture's tiny model.
 */
import { DiscordAdapter } from '../../src/adapters/discord/discord.ts';
import { SlackAdapter } from '../../src/adapters/slack/slack.ts';
import type { Bot } from '../../src/chat/bot.ts';
import type { QueueLimits } from '../../src/jobs/queue.ts';
import { FakeDiscord } from '../../src/testing/discordServer.ts';
import { FakeSlack } from '../../src/testing/slackApi.ts';
import { chatFixture, type ChatFixture } from './chatBot.ts';

export const SLACK_SIGNING_SECRET = 'test-signing-secret';

export interface TwoPlatforms {
  discord: FakeDiscord;
  slack: FakeSlack;
  fixture: ChatFixture;
  bot: Bot;
  discordAdapter: DiscordAdapter;
  slackAdapter: SlackAdapter;
  /** Where signed Slack requests go. */
  eventsUrl: string;
  /** Stops the adapters, the bot and the fakes, and removes the fixture. */
  stop(): Promise<void>;
}

export async function twoPlatforms(prefix: string, limits: Partial<QueueLimits> = { userPerMinute: 100, userMaxOpen: 5 }): Promise<TwoPlatforms> {
  const slack = await FakeSlack.start();
  const discord = await FakeDiscord.start();
  const fixture = await chatFixture(prefix);
  const bot = await fixture.openBot(limits);
  const slackAdapter = new SlackAdapter(
    bot,
    { botToken: 'xoxb-fake-token', mode: 'http', signingSecret: SLACK_SIGNING_SECRET, port: 0, apiUrl: slack.apiUrl, uploadLimitBytes: 1_000_000_000, fileHosts: ['127.0.0.1'] },
    fixture.log,
    { retries: 0 },
  );
  const eventsUrl = `http://127.0.0.1:${await slackAdapter.start()}/slack/events`;
  const discordAdapter = new DiscordAdapter(bot, { token: 'MTAw.fake.token', apiBase: discord.apiBase, uploadLimitBytes: 10_000_000, attachmentHosts: ['127.0.0.1'] }, fixture.log);
  await discordAdapter.start();
  const stop = async () => {
    await discordAdapter.stop();
    await slackAdapter.stop();
    await bot.close(5000);
    await discord.close();
    await slack.close();
    fixture.remove();
  };
  return { discord, slack, fixture, bot, discordAdapter, slackAdapter, eventsUrl, stop };
}
