// An artifact streamed chunk by chunk is one text to its caller. A callee may send an artifact in
// pieces (TaskArtifactUpdateEvent: the first with the artifact, the next with `append: true`, the
// last with `lastChunk: true`); the caller appends each chunk's parts to the artifact with the same
// id (A2A v1, "append": "the content of this artifact should be appended to a previously sent
// artifact with the same ID") and reads its text parts joined. A secret split across two chunks
// (its first half at the end of one event's text, the rest at the start of the next) is not
// contiguous in the SSE bytes, so neither the egress door nor scrubAcross (one event's parts) sees
// it. Here the text parts of one artifact (same task, same artifactId) are scrubbed as one
// character stream, as chat streams scrub their deltas (access/scrub-events.ts): what could be
// the start of a secret is held back and prepended to the artifact's next text part. Held text
// goes out with the chunk marked `lastChunk`, or, as an appended chunk of its own (`append: true`,
// `lastChunk: true`), before the task's final status update, before an artifact with the same id
// that replaces it (no `append`), before an error, and at the stream's end: nothing is lost or
// repeated, and the caller's joined text is the callee's with secrets redacted.
// A chunk appended to an artifact whose text has all gone out (after its last chunk, its task's
// final status, or in a task snapshot) is checked against that text's last characters: the rest
// of a secret they begin is cut from it. Status updates are not joined (each replaces the task's
// status), nor are messages (whole objects): scrubAcross covers the parts inside each.
import type { ScrubSource } from '../access/egress.ts';
import type { Scrubber, StreamScrubber } from '../credentials/scrub.ts';
import { isObj } from '../lib/json.ts';
import type { PushHeldStore } from '../store/push-held.ts';

type Obj = Record<string, unknown>;

/** One artifact's text stream, open (holding what may start a secret) or ended. */
interface Run {
  /** Its scrubber while open; null once its text has all gone out. */
  s: StreamScrubber | null;
  taskId: unknown;
  contextId: unknown;
  artifactId: unknown;
  /** The artifact was sent in the v0.3 shape (`kind: 'artifact-update'`, parts with `kind: 'text'`). */
  v03: boolean;
  /** The callee's last characters (fewer than the longest secret form): what an append after the end may complete. */
  recent: string;
}

/** An artifact whose text has all gone out (a task snapshot's): only its last characters matter. */
const ended = (recent: string): Run => ({ s: null, taskId: undefined, contextId: undefined, artifactId: undefined, v03: false, recent });

/**
 * False when no event in `text` (a callee's whole answer, read at once) can append to an artifact:
 * it spells no `append` (a key spelled with escapes has a backslash). Then the caller joins no
 * artifact text across events (an update without `append` replaces the artifact with its id): each
 * artifact's text goes out whole in its event, through the egress door, and scrubAcross joins the
 * parts inside it, so nothing needs holding back (ArtifactText is not used). Held back, the end of a
 * one-chunk artifact that could start a secret ("...for risk": "sk" may begin a key) split it in two
 * chunks, its event re-serialised and one more made.
 */
export function mayAppend(text: string): boolean {
  return text.indexOf('append') !== -1 || text.indexOf('\\') !== -1;
}

/** True when a stream event's result is an artifact update or a task snapshot with artifacts (then it goes through ArtifactText). */
export function mayJoin(result: unknown): boolean {
  if (!isObj(result)) return false;
  if (result.artifactUpdate !== undefined || result.kind === 'artifact-update') return true;
  const task = isObj(result.task) ? result.task : result.kind === 'task' ? result : undefined;
  return task !== undefined && Array.isArray(task.artifacts) && task.artifacts.length > 0;
}

/** The artifacts of one stream whose text is being relayed, and what each holds back. */
export class ArtifactText {
  readonly #src: ScrubSource;
  /** The scrubber of this stream (taken at its first artifact: held text belongs to one scrubber). */
  #sc: Scrubber | null = null;
  /**
   * The artifacts by key, open and ended (then their last characters: an append after that end
   * is checked against them). One map, made at the first artifact with text to scrub.
   */
  #runs: Map<string, Run> | null = null;
  /** How many of #runs are open. */
  #open = 0;
  /** What the runs' scrubbers found, reported (one function per stream). */
  readonly #leaked: (names: readonly string[]) => void;

  constructor(src: ScrubSource) {
    this.#src = src;
    this.#leaked = (names) => src.leaked(names);
  }

  /**
   * What this holds, as text (JSON), for `restore` (a push route's state kept between its
   * notifications, perhaps on another replica): each artifact's held text as the callee wrote it
   * (not scrubbed: it is kept sealed) and the last characters of those whose text all went out.
   */
  save(): string {
    const runs: unknown[] = [];
    const done: Array<[string, string]> = [];
    for (const [k, r] of this.#runs ?? []) {
      if (r.s !== null) runs.push([k, { p: r.s.pending, t: r.taskId, c: r.contextId, a: r.artifactId, v: r.v03, r: r.recent }]);
      else done.push([k, r.recent]);
    }
    // Open runs first, then ended ones: each list in the order its artifacts came.
    return JSON.stringify({ runs, ended: done });
  }

  /** An ArtifactText that goes on from `saved` (save()), scrubbing with the source's scrubber as it is now. */
  static restore(src: ScrubSource, saved: string): ArtifactText {
    const t = new ArtifactText(src);
    const o = JSON.parse(saved) as { runs: Array<[string, { p: string; t: unknown; c: unknown; a: unknown; v: boolean; r: string }]>; ended: Array<[string, string]> };
    const sc = src.scrubber();
    t.#sc = sc;
    const runs = t.#runs = new Map();
    for (const [k, r] of o.runs) runs.set(k, { s: sc.stream(t.#leaked, r.p), taskId: r.t, contextId: r.c, artifactId: r.a, v03: r.v, recent: r.r });
    t.#open = runs.size;
    for (const [k, v] of o.ended) if (!runs.has(k)) runs.set(k, ended(v));
    return t;
  }

  /**
   * The result as the caller gets it: the same object when no text changed; `emit` takes the
   * results (an artifact's held text) to send before it.
   */
  pass(result: unknown, emit: (result: Obj) => void): unknown {
    if (!isObj(result)) return result;
    const au = isObj(result.artifactUpdate) ? result.artifactUpdate : result.kind === 'artifact-update' ? result : undefined;
    if (au !== undefined) return this.#artifact(result, au, emit);
    // A task snapshot's artifacts: whole here (scrubAcross saw their parts), but a later chunk may append to one.
    const task = isObj(result.task) ? result.task : result.kind === 'task' ? result : undefined;
    if (task !== undefined && Array.isArray(task.artifacts) && task.artifacts.length > 0) this.#snapshot(task, emit);
    if (this.#open === 0) return result;
    const su = isObj(result.statusUpdate) ? result.statusUpdate : result.kind === 'status-update' ? result : undefined;
    if (su !== undefined && isFinal(su)) this.#flushAll(emit, false, su.taskId);
    return result;
  }

  /** True while an artifact's text is held back (its stream has not ended). */
  get holding(): boolean { return this.#open > 0; }

  /** Everything held goes out (the stream ends, or ends with an error). */
  end(emit: (result: Obj) => void): void {
    if (this.#open > 0) this.#flushAll(emit, true, undefined);
  }

  /** What the open artifacts hold goes out (`all`, or those of task `taskId`), in the order they came. */
  #flushAll(emit: (result: Obj) => void, all: boolean, taskId: unknown): void {
    // A run ended here stays in the map (ended): the map does not change while it is read. Its values
    // only (a run needs not its key to end): no [key, run] array per run.
    for (const run of this.#runs!.values()) if (run.s !== null && (all || run.taskId === taskId)) this.#flush(run, emit);
  }

  #artifact(result: Obj, au: Obj, emit: (result: Obj) => void): unknown {
    const art = au.artifact;
    if (!isObj(art) || !Array.isArray(art.parts)) return result;
    this.#sc ??= this.#src.scrubber();
    const sc = this.#sc;
    if (sc.size === 0) return result;
    const key = `${String(au.taskId)}\n${String(art.artifactId)}`;
    const append = au.append === true;
    const runs = this.#runs ??= new Map();
    let run = runs.get(key);
    // Without `append` the artifact replaces the one with its id: what the old one held goes out first.
    if (run !== undefined && run.s !== null && !append) this.#flush(run, emit);
    // An append to an artifact whose text all went out: the start of a secret may be in what went.
    let before = '';
    if (run === undefined || run.s === null) {
      if (append && run !== undefined) before = run.recent;
      // A new run goes last in the map's order (as it did when open and ended artifacts were kept apart).
      if (run !== undefined) runs.delete(key);
      run = { s: sc.stream(this.#leaked), taskId: au.taskId, contextId: au.contextId, artifactId: art.artifactId, v03: au === result, recent: '' };
      runs.set(key, run);
      this.#open++;
    }
    const s = run.s as StreamScrubber;
    const parts = art.parts as unknown[];
    const keep = sc.maxPatternLength - 1;
    let out: unknown[] | undefined;
    let last = -1;
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if (!isObj(p) || typeof p.text !== 'string') continue;
      last = i;
      let text = p.text;
      run.recent = run.recent.length + text.length > keep ? (run.recent + text).slice(-keep) : run.recent + text;
      if (before) { text = completing(this.#src, sc, before, text); before = ''; }
      const o = s.push(text);
      if (o !== p.text) (out ??= parts.slice())[i] = { ...p, text: o };
    }
    if (au.lastChunk === true) {
      const rest = this.#close(run);
      if (rest) {
        out ??= parts.slice();
        if (last >= 0) { const p = out[last] as Obj; out[last] = { ...p, text: (p.text as string) + rest }; } else out.push(textPart(rest, run.v03));
      }
    }
    if (out === undefined) return result;
    const update = { ...au, artifact: { ...art, parts: out } };
    return au === result ? update : { ...result, artifactUpdate: update };
  }

  /**
   * A task snapshot replaces its artifacts: what their streams held goes out first, and their last
   * characters are kept, to check an append to them against.
   */
  #snapshot(task: Obj, emit: (result: Obj) => void): void {
    this.#sc ??= this.#src.scrubber();
    if (this.#sc.size === 0) return;
    const keep = this.#sc.maxPatternLength - 1;
    const runs = this.#runs ??= new Map();
    for (const art of task.artifacts as unknown[]) {
      if (!isObj(art) || !Array.isArray(art.parts)) continue;
      const key = `${String(task.id)}\n${String(art.artifactId)}`;
      const run = runs.get(key);
      if (run !== undefined && run.s !== null) this.#flush(run, emit);
      let text = '';
      for (const p of art.parts as unknown[]) if (isObj(p) && typeof p.text === 'string') text = (text + p.text).slice(-keep);
      if (run !== undefined) runs.delete(key);
      runs.set(key, ended(text));
    }
  }

  /** The artifact's held text, scrubbed; its stream ends (its last characters stay, in `recent`). */
  #close(run: Run): string {
    const s = run.s as StreamScrubber;
    run.s = null;
    this.#open--;
    return s.end();
  }

  /** The held text as an appended last chunk of its own, for `emit`. */
  #flush(run: Run, emit: (result: Obj) => void): void {
    const rest = this.#close(run);
    if (!rest) return;
    const update: Obj = { taskId: run.taskId, contextId: run.contextId, artifact: { artifactId: run.artifactId, parts: [textPart(rest, run.v03)] }, append: true, lastChunk: true };
    emit(run.v03 ? { kind: 'artifact-update', ...update } : { artifactUpdate: update });
  }
}

/** Why a push route let go of what it held without a closing notification. */
export type HeldRelease = 'expired' | 'cap' | 'shutdown';

/** One artifact's held text released on its own: the appended last chunk to post, and what scrubbing it found. */
export interface Released { result: Obj; findings: string[] }

/**
 * Push notifications (POST /a2a/<agent>/push/<id>) carry artifact chunks too: each is a request of
 * its own, but the caller appends them as it would a stream's. One ArtifactText per push route
 * (one caller's config for a task) lives across its notifications: a chunk's possible secret start
 * is held back and goes out at the start of the artifact's next text part, appended to the
 * `lastChunk` notification's last text part, or as an appended last chunk of its own posted just
 * before the notification of the task's final status (or a replacing artifact).
 * The route's state lives in `store` between notifications (memory, or Redis for a fleet: the
 * notifications of one task are joined whichever replica each reaches), written back with the
 * version it was read at; a write another one beat is done again on the newer state.
 * Bounded: at most `max` routes whose last notification this process passed hold text (the least
 * recently notified lets go first), each at most `ttlMs` after its last notification, and a
 * shutdown's `releaseAll`; what a route held then goes to `release` (posted to the caller), so
 * nothing is lost, and the artifacts' last characters stay in the store `ttlMs` more: a chunk
 * appended after that (a callee resuming through another replica after this one shut down) has
 * the rest of a secret they begin cut. The store keeps a route's state `ttlMs` + a minute: a
 * replica that stopped without letting go (killed) leaves it to expire there, never posted unjoined.
 */
export class PushArtifactText<R> {
  readonly #src: ScrubSource;
  readonly #store: PushHeldStore;
  readonly #release: (route: R, released: Released[], reason: HeldRelease) => void | Promise<void>;
  readonly #max: number;
  readonly #ttlMs: number;
  /** Routes whose state this process wrote last, in order of their last notification here. */
  readonly #mine = new Map<string, { version: string; route: R; timer: NodeJS.Timeout }>();
  /** Releases under way (a shutdown waits for them): called with each as it starts. */
  readonly #working: (p: Promise<void>) => void;

  constructor(src: ScrubSource, store: PushHeldStore, release: (route: R, released: Released[], reason: HeldRelease) => void | Promise<void>,
    opts: { max?: number; ttlMs?: number; working?: (p: Promise<void>) => void } = {}) {
    this.#src = src; this.#store = store; this.#release = release;
    this.#max = opts.max ?? 10_000; this.#ttlMs = opts.ttlMs ?? 10 * 60_000; this.#working = opts.working ?? (() => {});
  }

  /** Routes whose held text this process would let go of. */
  get size(): number { return this.#mine.size; }

  /**
   * The notifications to post for `value` (a callee's notification through route `id`), in order:
   * what an artifact held that must go out first, then `value` with its artifact text scrubbed as
   * one stream with the route's earlier chunks. `[value]` when nothing of it is joined.
   * Throws what the store throws (StoreUnavailable: the notification is refused, not passed on unjoined).
   */
  async pass(id: string, route: R, value: unknown): Promise<unknown[]> {
    for (let attempt = 0; ; attempt++) {
      const cur = await this.#store.get(id);
      if (cur === undefined && !mayJoin(value)) return [value];
      const text = cur === undefined ? new ArtifactText(this.#src) : ArtifactText.restore(this.#src, cur.state);
      const out: unknown[] = [];
      const v = text.pass(value, (r) => { out.push(r); });
      out.push(v);
      const state = text.holding ? text.save() : null;
      if (state === null && cur === undefined) return out;
      const version = await this.#store.put(id, state, cur?.version ?? null, this.#ttlMs + 60_000);
      if (version === false) {
        if (attempt < 8) continue;
        throw new Error(`push route ${id}: its held text changed under ${attempt + 1} attempts in a row`);
      }
      this.#forget(id);
      if (state !== null) {
        // Full: the least recently notified route lets go of what it holds first.
        if (this.#mine.size >= this.#max) this.#expire(this.#mine.keys().next().value as string, 'cap');
        const timer = setTimeout(() => this.#expire(id, 'expired'), this.#ttlMs);
        timer.unref();
        this.#mine.set(id, { version, route, timer });
      }
      return out;
    }
  }

  /** Everything this process's routes hold goes out now (shutdown). */
  releaseAll(): void { for (const id of [...this.#mine.keys()]) this.#expire(id, 'shutdown'); }

  #forget(id: string): void {
    const e = this.#mine.get(id);
    if (e === undefined) return;
    clearTimeout(e.timer);
    this.#mine.delete(id);
  }

  #expire(id: string, reason: HeldRelease): void {
    const e = this.#mine.get(id);
    if (e === undefined) return;
    this.#forget(id);
    this.#working(this.#letGo(id, e, reason));
  }

  /** The route's held text, if it is still what this process wrote (else a later notification has it), ended and released. */
  async #letGo(id: string, e: { version: string; route: R }, reason: HeldRelease): Promise<void> {
    const cur = await this.#store.get(id);
    if (cur === undefined || cur.version !== e.version) return;
    let found: string[] = [];
    const src: ScrubSource = { scrubber: () => this.#src.scrubber(), leaked: (names) => { found.push(...names); this.#src.leaked(names); } };
    const out: Released[] = [];
    const text = ArtifactText.restore(src, cur.state);
    text.end((r) => { out.push({ result: r, findings: [...new Set(found)] }); found = []; });
    // Taken only if nothing changed it meanwhile (a notification on another replica): then that one
    // has it. What stays (no longer released by anyone) is the artifacts' last characters, for
    // `ttlMs`: a chunk appended later, through any replica, has the rest of a secret they begin cut.
    if (await this.#store.put(id, text.save(), cur.version, this.#ttlMs) === false) return;
    if (out.length) await this.#release(e.route, out, reason);
  }
}

const textPart = (text: string, v03: boolean): Obj => (v03 ? { kind: 'text', text } : { text });

/**
 * `text` appended to an artifact whose last characters (`before`) already went out: the rest of a
 * secret they begin is cut from it (the part that went out was not one on its own).
 */
function completing(src: ScrubSource, sc: Scrubber, before: string, text: string): string {
  const r = sc.scrubJoined([before, text]);
  if (r.leaked.length === 0) return text;
  src.leaked(r.leaked);
  return r.texts[1];
}

/** A status update after which the task's stream ends (completed, failed, canceled, rejected, input or auth required). */
function isFinal(su: Obj): boolean {
  if (su.final === true) return true;
  const state = isObj(su.status) ? su.status.state : undefined;
  if (typeof state === 'number') return state > 2;
  return typeof state === 'string' && !/^(TASK_STATE_)?(SUBMITTED|WORKING|UNSPECIFIED)$/i.test(state);
}
