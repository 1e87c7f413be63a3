/**
 * `retrain [force] [scratch] [epochs]` (moderators): starts a retraining run in the background,
 * shows its progress by editing this command's message, then posts the verdict with the
 * before/after metrics and the training curve. "busy" if a run is already going (in any process).
 * A promotion is also announced in the moderators' channel.
 */
import type { RetrainProgress } from '../src/community/retrain.ts';
import type { CommandSpec, OptionChoice } from './shared/command.ts';
import { COMMUNITY_OFF, requesterName, retrainMessage } from './shared/community.ts';

/** Progress edits at most this often (stage changes always show): chat platforms rate-limit edits. */
export const RETRAIN_PROGRESS_MS = 2000;

const YES_NO: OptionChoice[] = [
  { name: 'yes', value: 'yes' },
  { name: 'no', value: 'no' },
];

export const retrain: CommandSpec = {
  name: 'retrain',
  description: 'Retrain the model on the corpus and the accepted contributions (moderators)',
  permission: 'moderator',
  community: true,
  options: [
    { name: 'force', kind: 'string', description: 'yes: run even if no contribution changed since the serving model was made', choices: YES_NO },
    { name: 'scratch', kind: 'string', description: 'yes: train fresh weights instead of fine-tuning the serving model', choices: YES_NO },
    { name: 'epochs', kind: 'integer', description: 'most epochs for this run (default: NOCTURNE_RETRAIN_EPOCHS)', min: 1, max: 100 },
  ],
  details: [
    'Runs in the background while the bot keeps composing. The new model replaces the serving one only if its validation NLL is no worse and its pieces pass the drift check; otherwise it is kept as a rejected version. /models lists the versions, /rollback undoes a promotion.',
  ],
  async execute(request, reply) {
    const { bot, who } = request;
    const service = bot.community;
    if (!service) return reply.error(COMMUNITY_OFF);
    await reply.progress('starting a retraining run…');
    let shownStage = '';
    let shownAt = 0;
    const onProgress = (p: RetrainProgress) => {
      const now = Date.now();
      if (p.stage === shownStage && now - shownAt < RETRAIN_PROGRESS_MS) return;
      shownStage = p.stage;
      shownAt = now;
      void reply.progress(`retraining (run ${p.runId}), ${p.stage}: ${p.line}`);
    };
    const outcome = await service.retrain(
      {
        trigger: 'moderator',
        requestedBy: requesterName(who),
        force: request.options.force === 'yes',
        fromScratch: request.options.scratch === undefined ? undefined : request.options.scratch === 'yes',
        epochs: request.options.epochs as number | undefined,
      },
      onProgress,
    );
    if (outcome.status === 'busy') return reply.error(`${outcome.reason}; try again when it has finished`);
    const switched = outcome.status === 'promoted' ? await service.servingSwitched() : undefined;
    const message = retrainMessage(outcome, 'Retraining', switched);
    await reply.info(message);
    if (outcome.status === 'promoted') {
      await service.announce({ ...message, lines: [`started by ${requesterName(who)}`, ...message.lines] }, { platform: who.platform, channelId: who.channelId });
    }
  },
};
