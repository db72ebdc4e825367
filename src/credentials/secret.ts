// The one place a secret value lives in memory. The value sits in a private field so that
// JSON.stringify, util.inspect, template strings and structured logging print a placeholder.
// Only code holding REVEAL (the injector and the scrubber builder inside src/credentials) reads it;
// test/credentials-architecture.test.ts fails if anything outside src/credentials imports it.
import { inspect } from 'node:util';

export const REVEAL: unique symbol = Symbol('aam.credentials.reveal');

export class Secret {
  readonly #value: string;
  constructor(value: string) { this.#value = value; }
  [REVEAL](): string { return this.#value; }
  get length(): number { return this.#value.length; }
  equals(other: Secret): boolean { return other.#value === this.#value; }
  toString(): string { return '[secret]'; }
  toJSON(): string { return '[secret]'; }
  [inspect.custom](): string { return '[secret]'; }
}
