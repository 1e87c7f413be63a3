/**
 * The bot's commands, in the order help lists them. Each file declares its options once and has
 * one execute(request, reply); the adapters derive everything platform-specific from these.
 * The retraining issue adds `contribute` and `retrain` here (a `permission: 'manager'` command
 * like settings is the model for retrain).
 */
import type { CommandSpec } from '../src/chat/command.ts';
import { compose } from './compose.ts';
import { continueCommand } from './continue.ts';
import { help } from './help.ts';
import { settings } from './settings.ts';
import { show } from './show.ts';
import { status } from './status.ts';
import { styles } from './styles.ts';

export const COMMANDS: readonly CommandSpec[] = Object.freeze([compose, continueCommand, styles, show, status, settings, help]);
