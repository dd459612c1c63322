// checkraft WebSocket protocol codec (see docs/protocol.md).
// Plain ES module: no dependencies, runs in browsers and Node 20.
// All integers are little-endian; bitsets are LSB-first.

/** Ack status names, indexed by wire code. */
export const ACK_STATUSES = Object.freeze([
  "applied", "rate_limited", "out_of_range", "unavailable", "invalid",
]);

/** Resync reason names, indexed by wire code. */
export const RESYNC_REASONS = Object.freeze(["state_reset", "fell_behind"]);

/** Largest chunk size: update entry offsets are 15 bits. */
export const MAX_CHUNK_SIZE = 1 << 15;

const LE = true;

// ---------------------------------------------------------------- helpers

function toBytes(bytes) {
  if (bytes instanceof Uint8Array) return bytes;
  if (bytes instanceof ArrayBuffer) return new Uint8Array(bytes);
  if (ArrayBuffer.isView(bytes)) {
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  throw new TypeError("expected a Uint8Array, ArrayBuffer or typed array view");
}

function expectLength(bytes, len, what) {
  if (bytes.length !== len) {
    throw new Error(`${what}: expected ${len} bytes, got ${bytes.length}`);
  }
}

/** Length of a message with a u16 count at `at`: header + count * item. */
function countedLength(bytes, at, header, item, what) {
  if (bytes.length < header) {
    throw new Error(`${what}: expected at least ${header} bytes, got ${bytes.length}`);
  }
  const count = bytes[at] | (bytes[at + 1] << 8);
  return header + count * item;
}

function view(bytes) {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function u64ToNumber(big, field) {
  if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new Error(`${field}: u64 value ${big} exceeds Number.MAX_SAFE_INTEGER`);
  }
  return Number(big);
}

function checkUint(value, bits, field) {
  const max = bits === 64 ? Number.MAX_SAFE_INTEGER : 2 ** bits - 1;
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new Error(`${field}: expected an integer in 0..${max}, got ${value}`);
  }
  return value;
}

function checkBool(value, field) {
  if (typeof value !== "boolean") throw new Error(`${field}: expected a boolean, got ${value}`);
  return value;
}

/** A tiny little-endian writer over a fixed-size buffer. */
function writer(len, type) {
  const out = new Uint8Array(len);
  const dv = view(out);
  let pos = 0;
  out[pos++] = type;
  return {
    u8(v, f) { dv.setUint8(pos, checkUint(v, 8, f)); pos += 1; },
    u16(v, f) { dv.setUint16(pos, checkUint(v, 16, f), LE); pos += 2; },
    u32(v, f) { dv.setUint32(pos, checkUint(v, 32, f), LE); pos += 4; },
    u64(v, f) { dv.setBigUint64(pos, BigInt(checkUint(v, 64, f)), LE); pos += 8; },
    done() { if (pos !== len) throw new Error("internal: length mismatch"); return out; },
  };
}

/** A tiny little-endian reader; the caller has checked the length. */
function reader(bytes) {
  const dv = view(bytes);
  let pos = 1;
  return {
    u8() { const v = dv.getUint8(pos); pos += 1; return v; },
    u16() { const v = dv.getUint16(pos, LE); pos += 2; return v; },
    u32() { const v = dv.getUint32(pos, LE); pos += 4; return v; },
    u64(f) { const v = dv.getBigUint64(pos, LE); pos += 8; return u64ToNumber(v, f); },
  };
}

function codeOf(names, name, field) {
  const code = names.indexOf(name);
  if (code < 0) throw new Error(`${field}: unknown value ${JSON.stringify(name)}`);
  return code;
}

function nameOf(names, code, field) {
  if (code >= names.length) throw new Error(`${field}: unknown code ${code}`);
  return names[code];
}

// ---------------------------------------------------------------- client messages

/**
 * Encodes a client → gateway message.
 * @param {{type: "subscribe"|"unsubscribe", first_chunk: number, count: number}
 *   | {type: "set", request_id: number, index: number, checked: boolean}
 *   | {type: "ping", nonce: number}} msg
 * @returns {Uint8Array} the binary WebSocket payload
 * @throws {Error} on an unknown type or an out-of-range field
 */
export function encodeClient(msg) {
  switch (msg?.type) {
    case "subscribe":
    case "unsubscribe": {
      const w = writer(9, msg.type === "subscribe" ? 0x01 : 0x02);
      w.u32(msg.first_chunk, "first_chunk");
      w.u32(msg.count, "count");
      return w.done();
    }
    case "set": {
      const w = writer(10, 0x03);
      w.u32(msg.request_id, "request_id");
      w.u32(msg.index, "index");
      w.u8(checkBool(msg.checked, "checked") ? 1 : 0, "checked");
      return w.done();
    }
    case "ping": {
      const w = writer(5, 0x04);
      w.u32(msg.nonce, "nonce");
      return w.done();
    }
    default:
      throw new Error(`encodeClient: unknown message type ${JSON.stringify(msg?.type)}`);
  }
}

/**
 * Decodes a client → gateway message, strictly (exact length, known type,
 * `checked` 0 or 1).
 * @param {Uint8Array|ArrayBuffer} input
 * @returns {object} a message in the shape `encodeClient` takes
 * @throws {Error} on any malformed input
 */
export function decodeClient(input) {
  const bytes = toBytes(input);
  if (bytes.length === 0) throw new Error("decodeClient: empty message");
  const type = bytes[0];
  const r = reader(bytes);
  switch (type) {
    case 0x01:
    case 0x02: {
      const name = type === 0x01 ? "subscribe" : "unsubscribe";
      expectLength(bytes, 9, name);
      return { type: name, first_chunk: r.u32(), count: r.u32() };
    }
    case 0x03: {
      expectLength(bytes, 10, "set");
      const request_id = r.u32();
      const index = r.u32();
      const checked = r.u8();
      if (checked > 1) throw new Error(`set: checked must be 0 or 1, got ${checked}`);
      return { type: "set", request_id, index, checked: checked === 1 };
    }
    case 0x04:
      expectLength(bytes, 5, "ping");
      return { type: "ping", nonce: r.u32() };
    default:
      throw new Error(`decodeClient: unknown message type 0x${type.toString(16).padStart(2, "0")}`);
  }
}

// ---------------------------------------------------------------- server messages

/**
 * Encodes a gateway → client message (used by tests and mock gateways).
 * @param {object} msg one of hello, update, ack, stats, versions, resync, pong,
 *   in the shape `decodeServer` returns
 * @returns {Uint8Array} the binary WebSocket payload
 * @throws {Error} on an unknown type, status or reason, or an out-of-range field
 */
export function encodeServer(msg) {
  switch (msg?.type) {
    case "hello": {
      const w = writer(20, 0x81);
      w.u8(msg.protocol_version, "protocol_version");
      w.u64(msg.boxes, "boxes");
      w.u32(msg.chunk_size, "chunk_size");
      w.u32(msg.gateway_id, "gateway_id");
      w.u16(msg.load, "load");
      return w.done();
    }
    case "update": {
      const entries = msg.entries;
      if (!Array.isArray(entries) || entries.length > 0xffff) {
        throw new Error("update: entries must be an array of at most 65535 entries");
      }
      const w = writer(23 + 2 * entries.length, 0x82);
      w.u32(msg.chunk, "chunk");
      w.u64(msg.prev_version, "prev_version");
      w.u64(msg.version, "version");
      w.u16(entries.length, "count");
      for (const e of entries) {
        const offset = checkUint(e.offset, 15, "entry offset");
        w.u16(offset | (checkBool(e.checked, "entry checked") ? 0x8000 : 0), "entry");
      }
      return w.done();
    }
    case "ack": {
      const w = writer(14, 0x83);
      w.u32(msg.request_id, "request_id");
      w.u8(codeOf(ACK_STATUSES, msg.status, "ack status"), "status");
      w.u64(msg.seq, "seq");
      return w.done();
    }
    case "stats": {
      const w = writer(13, 0x84);
      w.u64(msg.checked, "checked");
      w.u32(msg.online, "online");
      return w.done();
    }
    case "versions": {
      const versions = msg.versions;
      if (!Array.isArray(versions) || versions.length > 0xffff) {
        throw new Error("versions: versions must be an array of at most 65535 numbers");
      }
      const w = writer(7 + 8 * versions.length, 0x85);
      w.u32(msg.first_chunk, "first_chunk");
      w.u16(versions.length, "count");
      for (const v of versions) w.u64(v, "version");
      return w.done();
    }
    case "resync": {
      const w = writer(10, 0x86);
      w.u32(msg.first_chunk, "first_chunk");
      w.u32(msg.count, "count");
      w.u8(codeOf(RESYNC_REASONS, msg.reason, "resync reason"), "reason");
      return w.done();
    }
    case "pong": {
      const w = writer(5, 0x87);
      w.u32(msg.nonce, "nonce");
      return w.done();
    }
    default:
      throw new Error(`encodeServer: unknown message type ${JSON.stringify(msg?.type)}`);
  }
}

/**
 * Decodes a gateway → client message, strictly (exact length, known type,
 * known ack status and resync reason, u64 values within Number.MAX_SAFE_INTEGER).
 * @param {Uint8Array|ArrayBuffer} input e.g. `event.data` with `binaryType = "arraybuffer"`
 * @returns {object} e.g. `{type: "update", chunk, prev_version, version, entries: [{offset, checked}]}`
 * @throws {Error} on any malformed input
 */
export function decodeServer(input) {
  const bytes = toBytes(input);
  if (bytes.length === 0) throw new Error("decodeServer: empty message");
  const type = bytes[0];
  const r = reader(bytes);
  switch (type) {
    case 0x81:
      expectLength(bytes, 20, "hello");
      return {
        type: "hello",
        protocol_version: r.u8(),
        boxes: r.u64("boxes"),
        chunk_size: r.u32(),
        gateway_id: r.u32(),
        load: r.u16(),
      };
    case 0x82: {
      expectLength(bytes, countedLength(bytes, 21, 23, 2, "update"), "update");
      const chunk = r.u32();
      const prev_version = r.u64("prev_version");
      const version = r.u64("version");
      const count = r.u16();
      const entries = [];
      for (let i = 0; i < count; i++) {
        const raw = r.u16();
        entries.push({ offset: raw & 0x7fff, checked: raw >> 15 === 1 });
      }
      return { type: "update", chunk, prev_version, version, entries };
    }
    case 0x83: {
      expectLength(bytes, 14, "ack");
      const request_id = r.u32();
      const status = nameOf(ACK_STATUSES, r.u8(), "ack status");
      return { type: "ack", request_id, status, seq: r.u64("seq") };
    }
    case 0x84:
      expectLength(bytes, 13, "stats");
      return { type: "stats", checked: r.u64("checked"), online: r.u32() };
    case 0x85: {
      expectLength(bytes, countedLength(bytes, 5, 7, 8, "versions"), "versions");
      const first_chunk = r.u32();
      const count = r.u16();
      const versions = [];
      for (let i = 0; i < count; i++) versions.push(r.u64("version"));
      return { type: "versions", first_chunk, versions };
    }
    case 0x86: {
      expectLength(bytes, 10, "resync");
      const first_chunk = r.u32();
      const count = r.u32();
      const reason = nameOf(RESYNC_REASONS, r.u8(), "resync reason");
      return { type: "resync", first_chunk, count, reason };
    }
    case 0x87:
      expectLength(bytes, 5, "pong");
      return { type: "pong", nonce: r.u32() };
    default:
      throw new Error(`decodeServer: unknown message type 0x${type.toString(16).padStart(2, "0")}`);
  }
}

// ---------------------------------------------------------------- bitsets

/**
 * Whether box `offset` of a chunk bitset is checked (LSB-first:
 * bit `offset & 7` of byte `offset >> 3`).
 * @param {Uint8Array} bytes the chunk bitset
 * @param {number} offset the box's offset within the chunk
 * @returns {boolean}
 */
export function bitsetGet(bytes, offset) {
  return (bytes[offset >> 3] & (1 << (offset & 7))) !== 0;
}

/**
 * Sets or clears box `offset` of a chunk bitset in place.
 * @param {Uint8Array} bytes the chunk bitset
 * @param {number} offset the box's offset within the chunk
 * @param {boolean} value checked or not
 * @returns {void}
 * @throws {RangeError} when `offset` is outside the bitset
 */
export function bitsetSet(bytes, offset, value) {
  const byte = offset >> 3;
  if (!Number.isInteger(offset) || offset < 0 || byte >= bytes.length) {
    throw new RangeError(`bitset offset ${offset} out of range for ${bytes.length} bytes`);
  }
  const mask = 1 << (offset & 7);
  bytes[byte] = value ? bytes[byte] | mask : bytes[byte] & ~mask;
}

/**
 * Builds the bitset of the chunk holding boxes `start .. start+len-1`.
 * @param {number} start the chunk's first box index
 * @param {number} len the number of boxes in the chunk
 * @param {Iterable<number>} checkedIndices absolute box indices; those outside the chunk are ignored
 * @returns {Uint8Array} `ceil(len / 8)` bytes
 */
export function bitsetEncode(start, len, checkedIndices) {
  const bytes = new Uint8Array(Math.ceil(len / 8));
  for (const index of checkedIndices) {
    const i = index - start;
    if (i >= 0 && i < len) bitsetSet(bytes, i, true);
  }
  return bytes;
}

// ---------------------------------------------------------------- the client rule

/**
 * Applies an Update to the client's copy of one chunk, per the rule in
 * docs/protocol.md. Mutates `chunkState` only when it returns "applied";
 * throws (without mutating) if an entry's offset lies outside `bits`.
 * - `version <= v`: "ignored" (already have it);
 * - `prev_version <= v < version`: entries applied, `v = version`, "applied";
 * - `v < prev_version`: "refetch" (a change was missed; refetch over HTTP).
 * @param {{version: number, bits: Uint8Array}} chunkState the chunk's content and version `v`
 * @param {{prev_version: number, version: number, entries: {offset: number, checked: boolean}[]}} msg a decoded Update
 * @returns {"applied"|"ignored"|"refetch"}
 */
export function applyUpdate(chunkState, msg) {
  const v = chunkState.version;
  if (msg.version <= v) return "ignored";
  if (v < msg.prev_version) return "refetch";
  for (const e of msg.entries) {
    if (e.offset >> 3 >= chunkState.bits.length) {
      throw new RangeError(`update entry offset ${e.offset} is outside chunk ${msg.chunk}`);
    }
  }
  for (const e of msg.entries) bitsetSet(chunkState.bits, e.offset, e.checked);
  chunkState.version = msg.version;
  return "applied";
}
