// One walk over a streamed event's parsed JSON for what two checks read from all of it
// (StreamRelay.framed): the raw check (raw.ts: its keys counted, a repeated key makes it
// re-serialised; its strings, when its data has a backslash, checked for a secret spelled with
// escapes) and the scrub across parts (scrubAcross: its result's text parts gathered, a secret split
// across two of them). Each walked the whole event on its own before (keyCount, textLeavesUpTo,
// stringsOf); in the relay's per-event work (bench/a2a-stream-events.ts) those walks were a third.
// The checks decide as before: the raw check compares the keys counted here with the members its
// data writes; the text parts gathered here are exactly those scrubAcross joins (structured.ts
// acrossPartOf), so their join holding no secret means scrubAcross would change nothing, and it is
// not called: it walks the result again building a path per leaf (2.4 us for the long stream's
// last event, its task with an artifact and its history). Where the walk cannot gather them
// exactly (a JSON `arguments` string, a data: URL text part, nested deeper than mapLeaves
// rebuilds) scrubAcross runs as before. Deeper than MAX_JSON_DEPTH the walk stops: the event is
// then re-serialised and its result scrubbed across.
import { MAX_JSON_DEPTH } from '../access/json-depth.ts';
import { ACROSS_MAX_DEPTH, acrossPartOf, scrubAcross, scrubAcrossParts, type ScrubSource } from '../access/egress.ts';
import { escapesChecked, passesRawWalked } from './raw.ts';

/** The depth the walk gives the event's result (read(): the event's members are at 2). */
const RESULT_DEPTH = 2;

/** What one walk found in a stream's last event (read()): one per stream, read again for each event. */
export class EventWalk {
  /** The keys of every object in the event (keyCount). */
  keys = 0;
  /** Its result's first text part (null: none), and all of them once there are two (else null): no array per event with one. */
  #first: string | null = null;
  #parts: string[] | null = null;
  /** `parts` are all the result's text parts (else only scrubAcross knows them). */
  exact = true;
  /** Nested deeper than MAX_JSON_DEPTH: the walk stopped (nothing it counted is trusted). */
  deep = false;
  /** Every string in the event, keys included, when escapesChecked (else null). */
  strings: string[] | null = null;

  /** Walks `ev`, the event JSON.parse read from `data`. */
  read(egress: ScrubSource, ev: Record<string, unknown>, data: string): void {
    this.keys = 0;
    this.#first = null;
    this.#parts = null;
    this.exact = true;
    this.deep = false;
    const strings: string[] | null = this.strings = escapesChecked(egress, data) ? [] : null;
    for (const k in ev) {
      this.keys++;
      strings?.push(k);
      const v = ev[k];
      // Text parts are gathered in the result only (what scrubAcross is given): the result itself is at mapLeaves' path '$', no part.
      if (typeof v === 'string') strings?.push(v);
      else this.#walk(v, k === 'result' ? '' : null, RESULT_DEPTH);
    }
  }

  /**
   * `result` (the event's, or what an output guardrail made of it) with a secret split across its
   * text parts redacted: from the parts gathered when it is the event's and they are exact, else
   * scrubAcross (another result than the event's, parts not gathered exactly, or nested too deep).
   */
  scrubbed<T>(egress: ScrubSource, ev: Record<string, unknown>, result: T): T {
    if ((result as unknown) !== ev.result || this.deep || !this.exact) return scrubAcross(egress, result);
    return this.#parts === null ? result : scrubAcrossParts(egress, result, this.#parts);
  }

  /** Its result's text parts, in mapLeaves' order, as scrubAcross joins them (while `exact`). */
  get parts(): readonly string[] {
    return this.#parts ?? (this.#first === null ? [] : [this.#first]);
  }

  /** raw.ts passesRaw for the event walked, from what the walk found (its data: `data`). */
  passesRaw(egress: ScrubSource, data: string): boolean {
    return passesRawWalked(egress, data, this.deep ? -1 : this.keys, this.strings);
  }

  /**
   * `v`, an object or array member (or a top member of the event); `key`: the key it is under (an
   * array's elements under the array's, as mapLeaves reads them), null outside the result.
   */
  #walk(v: unknown, key: string | null, depth: number): void {
    if (typeof v !== 'object' || v === null) return;
    if (depth > MAX_JSON_DEPTH) { this.deep = true; return; }
    // mapLeaves hands this subtree to `deep`: its parts are not joined there, so not gathered here either.
    if (key !== null && depth - RESULT_DEPTH >= ACROSS_MAX_DEPTH) this.exact = false;
    const strings = this.strings;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const x: unknown = v[i];
        if (typeof x !== 'string') this.#walk(x, key, depth + 1);
        else { strings?.push(x); if (key !== null && this.exact) this.#part(x, key, false); }
      }
      return;
    }
    for (const k in v) {
      this.keys++;
      strings?.push(k);
      const x = (v as Record<string, unknown>)[k];
      if (typeof x !== 'string') this.#walk(x, key === null ? null : k, depth + 1);
      else { strings?.push(x); if (key !== null && this.exact) this.#part(x, k, true); }
    }
  }

  /** A string of the result under `key` (an array element: `member` false). */
  #part(s: string, key: string, member: boolean): void {
    const p = acrossPartOf(key, s, member);
    if (p === 1) {
      if (this.#parts !== null) this.#parts.push(s);
      else if (this.#first === null) this.#first = s;
      else this.#parts = [this.#first, s];
    } else if (p === -1) this.exact = false;
  }
}
