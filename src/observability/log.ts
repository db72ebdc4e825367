// Structured JSON logs on stderr. Tiny on purpose: one line per event, level filter, never a secret
// (callers pass names and ids, the credential scrubber guards message text).

export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** AAM_LOG_LEVEL as a level, or undefined when unset; a value that is not a level refuses the start (it was read as info). */
export function logLevelFrom(value: string | undefined): Level | undefined {
  if (value === undefined || value === '') return undefined;
  if (Object.hasOwn(ORDER, value)) return value as Level;
  throw new Error(`AAM_LOG_LEVEL must be debug, info, warn or error, not "${value}"`);
}

export function createLogger(opts: { level?: Level; write?: (line: string) => void; scrub?: (s: string) => string } = {}): Logger {
  const min = ORDER[opts.level ?? logLevelFrom(process.env.AAM_LOG_LEVEL) ?? 'info'];
  const write = opts.write ?? ((line: string) => { process.stderr.write(line); });
  const emit = (level: Level, obj: object, msg?: string) => {
    if (ORDER[level] < min) return;
    let line = JSON.stringify({ time: new Date().toISOString(), level, msg, ...obj }, errorReplacer) + '\n';
    if (opts.scrub) line = opts.scrub(line);
    write(line);
  };
  return {
    debug: (o, m) => emit('debug', o, m), info: (o, m) => emit('info', o, m),
    warn: (o, m) => emit('warn', o, m), error: (o, m) => emit('error', o, m),
  };
}

function errorReplacer(_k: string, v: unknown): unknown {
  return v instanceof Error ? { name: v.name, message: v.message } : v;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
