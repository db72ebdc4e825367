// Build AWS event-stream bodies for tests and fake Bedrock upstreams.
import { encodeMessage } from '../../src/providers/bedrock-eventstream.ts';

export interface Frame { event: string; payload: unknown }

export function eventFrame(event: string, payload: unknown): Buffer {
  return Buffer.from(encodeMessage({ ':event-type': event, ':content-type': 'application/json', ':message-type': 'event' }, new TextEncoder().encode(JSON.stringify(payload))));
}

export function exceptionFrame(type: string, message: string): Buffer {
  return Buffer.from(encodeMessage({ ':exception-type': type, ':content-type': 'application/json', ':message-type': 'exception' }, new TextEncoder().encode(JSON.stringify({ message }))));
}

export function eventStream(frames: readonly Frame[]): Buffer {
  return Buffer.concat(frames.map((f) => eventFrame(f.event, f.payload)));
}
