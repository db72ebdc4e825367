// The long-lived streams open on this server, of every plane (MCP listen and GET SSE streams, A2A
// stream relays): the one place a shutdown's drain ends them all at once. Each stream registers
// how it ends for a drain (as the plane decides: a dropped stream its client opens again, an
// error event naming what to do next) and unregisters when it ends by itself. A stream that opens
// once the drain has begun is ended at once (close() stopped accepting, but a request read just
// before may still be opening its stream).

/** How a stream ends for a drain; called at most once. */
export type EndForDrain = () => void;

export class OpenStreams {
  readonly #open = new Set<EndForDrain>();
  #draining = false;

  /** True once drain() was called (the server is shutting down). */
  get draining(): boolean { return this.#draining; }

  /** How many streams are open now. */
  get size(): number { return this.#open.size; }

  /**
   * Register an open stream; `end` ends it for a drain. Returns the function that unregisters it
   * (call it when the stream ends by itself). While draining, `end` is called at once (in this turn).
   */
  add(end: EndForDrain): () => void {
    if (this.#draining) { end(); return noop; }
    this.#open.add(end);
    return () => { this.#open.delete(end); };
  }

  /** Shutdown: every open stream ended now, and every one opening from now on; the count ended. */
  drain(): number {
    this.#draining = true;
    const all = [...this.#open];
    this.#open.clear();
    // One stream failing to end does not keep the others open.
    let failed: unknown[] | undefined;
    for (const end of all) try { end(); } catch (e) { (failed ??= []).push(e); }
    if (failed) throw new AggregateError(failed, `${failed.length} of ${all.length} open stream(s) failed to end for the drain`);
    return all.length;
  }
}

const noop = (): void => {};
