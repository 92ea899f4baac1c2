// The deterministic "model output". Tests compare answers against expectedReply() to prove a
// request reached the right model and that the model's weights were intact.
import { createHash } from 'node:crypto';

/** Token i (1-based) of a correct generation by the model served as `servedName`. */
export function replyToken(servedName: string, i: number): string {
  return `${servedName}#${i}`;
}

/** What a server whose weights were discarded (released without --enable-weights-cpu-backup,
 * resumed, never reloaded) emits for every token. */
export const GARBAGE_TOKEN = '\ufffd\ufffd';

/** The exact completion text of an n-token generation: tokens joined by single spaces. */
export function expectedReply(servedName: string, n: number): string {
  const tokens: string[] = [];
  for (let i = 1; i <= n; i++) tokens.push(replyToken(servedName, i));
  return tokens.join(' ');
}

/** True when the text came from discarded weights. */
export function isGarbage(text: string): boolean {
  return text.includes('\ufffd');
}

const EMBEDDING_DIMS = 8;

/** A fixed, checkable vector for one input: the same for the same served name and input. */
export function embeddingOf(servedName: string, input: string): number[] {
  const digest = createHash('sha256').update(`${servedName}\n${input}`).digest();
  return Array.from({ length: EMBEDDING_DIMS }, (_, i) => (digest[i]! - 128) / 128);
}
