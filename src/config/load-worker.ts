// The thread of isolated.ts: validates the config texts it was given, answers once, exits.
// The loader is imported inside the try so that even a failure to load it is an answer.
import { workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import type { ConfigSource } from './sources.ts';
import type { LoadReply } from './isolated.ts';

const { port, done, sources } = workerData as { port: MessagePort; done: Int32Array; sources: ConfigSource[] };

function answer(reply: LoadReply): void {
  try { port.postMessage(reply); } catch (e) { port.postMessage({ error: `config validation: ${(e as Error).message}` }); }
  Atomics.store(done, 0, 1);
  Atomics.notify(done, 0);
}

try {
  const { parseConfigTexts, ConfigError } = await import('./load.ts');
  try { answer({ set: parseConfigTexts(sources) }); } catch (e) {
    answer(e instanceof ConfigError ? { issues: e.issues } : { error: (e as Error).message ?? String(e) });
  }
} catch (e) {
  answer({ error: `config validation: cannot load the loader: ${(e as Error).message}` });
}
port.close();
