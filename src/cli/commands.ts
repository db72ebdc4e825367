// Subcommands beyond serve/validate/keys, kept apart so main.ts stays a dispatcher.
import type { Command } from './main.ts';

export const extraCommands: Record<string, Command> = {};
