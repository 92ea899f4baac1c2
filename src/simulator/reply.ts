// The deterministic "model output". Tests compare answers against expectedReply() to prove a
// request reached the right model and that the model's weights were intact.

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
