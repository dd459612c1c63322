// Pure gateway choice: parsing /config.json, resolving relative WebSocket
// URLs against the page's origin, scoring candidates by round-trip time and
// load, "the better of two random choices", and reconnect backoff.
// Randomness is passed in, so tests are deterministic.

/** Endpoints used when /config.json is missing or malformed. */
export const DEFAULT_ENDPOINTS = Object.freeze(["/ws"]);

/** Backoff: first delay, cap (ms). Jitter is ±50%. */
export const BACKOFF_BASE_MS = 250;
export const BACKOFF_MAX_MS = 10_000;

/**
 * The endpoint list of a /config.json body (parsed JSON or null).
 * @returns {string[]} non-empty
 */
export function endpointsFromConfig(config) {
  const list = config && Array.isArray(config.endpoints)
    ? config.endpoints.filter((e) => typeof e === "string" && e.length > 0)
    : [];
  return list.length > 0 ? list : [...DEFAULT_ENDPOINTS];
}

/**
 * An absolute ws:/wss: URL for an endpoint entry. Relative entries ("/ws")
 * mean the page's own origin, with ws: for http: and wss: for https:.
 * @param {string} entry
 * @param {string} base the page's (or worker's) location href
 */
export function resolveEndpoint(entry, base) {
  const url = new URL(entry, base);
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  return url.href;
}

/**
 * A candidate's score; lower is better. `rtt` in ms (null: no Pong in
 * time), `load` in permille from Hello. A loaded gateway's rtt counts up
 * to three times.
 */
export function scoreCandidate({ rtt, load }) {
  const r = rtt == null ? 1000 : rtt;
  const l = Math.min(1000, Math.max(0, load ?? 1000));
  return (r + 5) * (1 + (2 * l) / 1000);
}

/** The best of candidates that got a Hello; null if none did. */
export function bestCandidate(cands) {
  let best = null;
  for (const c of cands) {
    if (!c.hello) continue;
    if (!best || scoreCandidate(c) < scoreCandidate(best)) best = c;
  }
  return best;
}

/**
 * Up to two distinct endpoints chosen at random, preferring ones not in
 * `avoid` (recently failed); falls back to avoided ones when needed.
 * @param {string[]} endpoints
 * @param {Set<string>} avoid
 * @param {() => number} random in [0, 1)
 */
export function pickTwo(endpoints, avoid, random) {
  const fresh = endpoints.filter((e) => !avoid.has(e));
  const pool = fresh.length > 0 ? fresh : [...endpoints];
  const out = [];
  while (out.length < 2 && pool.length > 0) {
    const i = Math.min(pool.length - 1, Math.floor(random() * pool.length));
    out.push(pool.splice(i, 1)[0]);
  }
  return out;
}

/** Reconnect delay for attempt n (0-based): 250 ms doubling to 10 s, ±50% jitter. */
export function backoffDelay(attempt, random) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16));
  return Math.round(base * (0.5 + random()));
}

/** Whether a close code says "go elsewhere" (shutdown, capacity, abnormal). */
export function closeMeansAvoid(code) {
  return code === 1001 || code === 1013 || code === 1006 || code === 1011 || code === 1008;
}
