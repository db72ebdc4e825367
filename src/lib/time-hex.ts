// The time-first prefix of aam's ids (trace ids, local response ids): ids made close in time
// sort close together, so a B-tree keyed by them (the audit trail's trace index, the stored
// Responses table) appends at its end instead of touching a random page per insert.

/** "00".."ff", built once: six lookups are cheaper than Number#toString(16) of a double (~2K instructions). */
const BYTE_HEX: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** The low 48 bits of a time in ms as 12 lowercase hex digits (wraps in the year 10889). */
export function timeHex(ms: number = Date.now()): string {
  const hi = Math.floor(ms / 0x1_0000_0000) & 0xffff;
  const lo = ms >>> 0;
  return BYTE_HEX[hi >>> 8] + BYTE_HEX[hi & 0xff] + BYTE_HEX[lo >>> 24] + BYTE_HEX[(lo >>> 16) & 0xff] + BYTE_HEX[(lo >>> 8) & 0xff] + BYTE_HEX[lo & 0xff];
}
