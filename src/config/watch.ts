// Watch a config file (or a directory of *.yaml files) for changes, surviving atomic replaces.
// A watch on the file itself follows its inode: editors, `sed -i` and `mv new aam.yaml` put a new
// inode at the path, and a file watch then never fires again. So the directory is watched and
// events are filtered by name; the digest check in reload makes a spurious event cost one read.
import { watch, statSync, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

export interface ConfigWatch { close(): void }

/**
 * Does a directory event name a config change? `base`: the config file's name, or null when the
 * config is a directory (any *.yaml / *.yml). A name starting with ".." is a Kubernetes ConfigMap
 * swap (the `..data` symlink is replaced); a null name means the platform did not say.
 */
export function isConfigEvent(filename: string | null, base: string | null): boolean {
  if (filename === null || filename.startsWith('..')) return true;
  return base === null ? /\.ya?ml$/.test(filename) : filename === base;
}

/** Call `onChange` (debounced by `debounceMs`) whenever the config at `path` may have changed. */
export function watchConfig(path: string, onChange: () => void, onError: (e: Error) => void, debounceMs = 100): ConfigWatch {
  const isDir = statSync(path).isDirectory();
  const dir = isDir ? path : dirname(path);
  const base = isDir ? null : basename(path);
  let timer: NodeJS.Timeout | null = null;
  const fire = () => { timer = null; onChange(); };
  const w: FSWatcher = watch(dir, { persistent: false }, (_event, filename) => {
    if (!isConfigEvent(filename === null ? null : String(filename), base)) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(fire, debounceMs);
  });
  // An unhandled 'error' would crash the gateway (e.g. the directory was removed): report it instead.
  w.on('error', onError);
  return { close: () => { if (timer) clearTimeout(timer); w.close(); } };
}
