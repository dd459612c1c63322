// The server-rendered page's data block (gateway/src/ssr.rs): the grid's
// dimensions and the bitsets of the chunks drawn into the first HTML.
// Pure parsing; main.js seeds its model with the result.

/**
 * The data of a `#ssr-chunks` block's text, or null when absent or broken.
 * @param {string|null} text
 * @returns {{boxes: number, chunkSize: number,
 *   chunks: {chunk: number, seq: number, etag: string|null, bytes: Uint8Array}[]}|null}
 */
export function parseSsr(text) {
  if (!text) return null;
  let d;
  try {
    d = JSON.parse(text);
  } catch {
    return null;
  }
  if (!d || !Number.isSafeInteger(d.boxes) || !Number.isSafeInteger(d.chunk_size) || d.chunk_size <= 0
    || !Array.isArray(d.chunks)) return null;
  const chunks = [];
  for (const c of d.chunks) {
    if (!c || !Number.isSafeInteger(c.chunk) || c.chunk < 0 || !Number.isSafeInteger(c.seq) || typeof c.bits !== "string") continue;
    let bytes;
    try {
      bytes = Uint8Array.from(atob(c.bits), (ch) => ch.charCodeAt(0));
    } catch {
      continue;
    }
    chunks.push({ chunk: c.chunk, seq: c.seq, etag: typeof c.etag === "string" ? c.etag : null, bytes });
  }
  return { boxes: d.boxes, chunkSize: d.chunk_size, chunks };
}
