/**
 * The bot's commands, in the order help lists them. Each file declares its options once and has
 * one execute(request, reply); the adapters derive everything platform-specific from these.
 * The community commands (`community: true`) are left out when the community loop is off;
 * `permission: 'moderator'` ones run only for its moderators.
 */
import type { CommandSpec } from './shared/command.ts';
import { compose } from './compose.ts';
import { continueCommand } from './continue.ts';
import { contribute } from './contribute.ts';
import { contribution } from './contribution.ts';
import { contributions } from './contributions.ts';
import { drift } from './drift.ts';
import { help } from './help.ts';
import { models } from './models.ts';
import { retrain } from './retrain.ts';
import { rollback } from './rollback.ts';
import { settings } from './settings.ts';
import { show } from './show.ts';
import { status } from './status.ts';
import { styles } from './styles.ts';

export const COMMANDS: readonly CommandSpec[] = Object.freeze([
  compose,
  continueCommand,
  styles,
  show,
  status,
  contribute,
  models,
  settings,
  contributions,
  contribution,
  drift,
  retrain,
  rollback,
  help,
]);
