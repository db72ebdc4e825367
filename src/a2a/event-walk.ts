// One walk over a streamed event's parsed JSON for what two checks read from all of it
// (StreamRelay.framed): the raw check (raw.ts: its keys counted, a repeated key makes it
// re-serialised; its strings, when its data has a backslash, checked for a secret spelled with
// escapes) and the scrub across parts (scrubAcross: its result's text parts counted, a secret split
// across two of them). Each walked the whole event on its own before (keyCount, textLeavesUpTo,
// stringsOf); in the relay's per-event work (bench/a2a-stream-events.ts) those walks were a third.
// The checks themselves are unchanged and decide as before: scrubAcross runs (and counts again)
// when this walk found two text parts or more; the raw check compares the keys counted here with
// the members its data writes. Deeper than MAX_JSON_DEPTH the walk stops: the event is then
// re-serialised and its result scrubbed across, as when the checks counted.
import { acrossPartCount, scrubAcross, type ScrubSource } from '../access/egress.ts';
import { MAX_JSON_DEPTH } from '../access/json-depth.ts';
import { escapesChecked, passesRawWalked } from './raw.ts';

/** What one walk found in a stream's last event (read()): one per stream, read again for each event. */
export class EventWalk {
  /** The keys of every object in the event (keyCount). */
  keys = 0;
  /** Its result's text parts, counted up to 2 (textLeavesUpTo(result, 2): it counts no fewer). */
  texts = 0;
  /** Nested deeper than MAX_JSON_DEPTH: the walk stopped (nothing it counted is trusted). */
  deep = false;
  /** Every string in the event, keys included, when escapesChecked (else null). */
  strings: string[] | null = null;

  /** Walks `ev`, the event JSON.parse read from `data`. */
  read(egress: ScrubSource, ev: Record<string, unknown>, data: string): void {
    this.keys = 0;
    this.texts = 0;
    this.deep = false;
    const strings: string[] | null = this.strings = escapesChecked(egress, data) ? [] : null;
    for (const k in ev) {
      this.keys++;
      strings?.push(k);
      // Text parts are counted in the result only (what scrubAcross is given), from its top ('' as textLeavesUpTo starts).
      this.#walk(ev[k], k === 'result' ? '' : null, 2);
    }
  }

  /**
   * `result` (the event's, or what an output guardrail made of it) with a secret split across its
   * text parts redacted: scrubAcross, called when the walk found two text parts or more, or could
   * not count them (another result than the event's, or nested too deep).
   */
  scrubbed<T>(egress: ScrubSource, ev: Record<string, unknown>, result: T): T {
    return (result as unknown) !== ev.result || this.deep || this.texts >= 2 ? scrubAcross(egress, result) : result;
  }

  /** raw.ts passesRaw for the event walked, from what the walk found (its data: `data`). */
  passesRaw(egress: ScrubSource, data: string): boolean {
    return passesRawWalked(egress, data, this.deep ? -1 : this.keys, this.strings);
  }

  /** `key`: the key a string here is under (an array's elements under the array's), null outside the result. */
  #walk(v: unknown, key: string | null, depth: number): void {
    if (typeof v === 'string') {
      if (key !== null && this.texts < 2) this.texts += acrossPartCount(key, v, 2);
      this.strings?.push(v);
      return;
    }
    if (typeof v !== 'object' || v === null) return;
    if (depth > MAX_JSON_DEPTH) { this.deep = true; return; }
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) this.#walk(v[i], key, depth + 1);
      return;
    }
    for (const k in v) {
      this.keys++;
      this.strings?.push(k);
      this.#walk((v as Record<string, unknown>)[k], key === null ? null : k, depth + 1);
    }
  }
}
