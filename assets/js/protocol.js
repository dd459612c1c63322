// checkraft WebSocket protocol codec, version 2 (see docs/protocol.md).
// Plain ES module: no dependencies, runs in browsers and Node 20.
// Integers are unsigned LEB128 varints (minimal, at most 10 bytes); flags,
// statuses and reasons are single bytes. An Update carries `version` and
// `delta` (prev_version = version - delta) and its entries as a gap-coded
// list (0x82) or, when smaller, a bitset (0x88). Bitsets are LSB-first.
// A SetMany (0x05) carries several boxes gap-coded in ascending index
// order; its AckMany (0x89) answers them as runs of equal outcome.

/** The protocol version this codec speaks (Hello's `protocol_version`). */
export const PROTOCOL_VERSION = 2;

/** Ack status names, indexed by wire code. */
export const ACK_STATUSES = Object.freeze([
  "applied", "rate_limited", "out_of_range", "unavailable", "invalid",
]);

/** Resync reason names, indexed by wire code. */
export const RESYNC_REASONS = Object.freeze(["state_reset", "fell_behind"]);

/** Largest chunk size: update entry offsets are below 2^15. */
export const MAX_CHUNK_SIZE = 1 << 15;

/** Most chunks in one Versions message. */
export const MAX_VERSIONS_RUN = 256;

/** Most boxes in one SetMany (and one AckMany). */
export const MAX_SETS_PER_MESSAGE = 256;

const UPDATE_LIST = 0x82;
const UPDATE_BITSET = 0x88;

// ---------------------------------------------------------------- helpers

function toBytes(bytes) {
  if (bytes instanceof Uint8Array) return bytes;
  if (bytes instanceof ArrayBuffer) return new Uint8Array(bytes);
  if (ArrayBuffer.isView(bytes)) {
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  throw new TypeError("expected a Uint8Array, ArrayBuffer or typed array view");
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

/** Bytes of `value`'s varint. */
function varintLength(value) {
  let n = 1;
  while (value >= 128) { value = Math.floor(value / 128); n++; }
  return n;
}

/** A growing writer: the type byte, then fields. */
function writer(type) {
  const out = [type];
  return {
    u8(v, f) { out.push(checkUint(v, 8, f)); },
    varint(v, bits, f) {
      checkUint(v, bits, f);
      while (v >= 128) { out.push((v % 128) | 0x80); v = Math.floor(v / 128); }
      out.push(v);
    },
    bytes(b) { for (const x of b) out.push(x); },
    done() { return Uint8Array.from(out); },
  };
}

/** A strict reader of one message, after its type byte. */
function reader(bytes, what) {
  let pos = 1;
  const byte = (field) => {
    if (pos >= bytes.length) throw new Error(`${what}: ends inside ${field}`);
    return bytes[pos++];
  };
  return {
    get remaining() { return bytes.length - pos; },
    u8: byte,
    bytes(n, field) {
      if (bytes.length - pos < n) throw new Error(`${what}: ends inside ${field}`);
      const out = bytes.subarray(pos, pos + n);
      pos += n;
      return out;
    },
    /** A minimal varint of at most 10 bytes, within `bits` bits and 2^53 - 1. */
    varint(field, bits = 64) {
      // Numbers are exact up to 2^53: enough for 7 groups (49 bits); the
      // rare longer varint is summed as a BigInt.
      let value = 0;
      let big = null;
      for (let i = 0; i < 10; i++) {
        const b = byte(field);
        if (i === 9 && b > 1) throw new Error(`${what}: ${field}: varint longer than 10 bytes or past 2^64`);
        if (i < 7) value += (b & 0x7f) * 2 ** (7 * i);
        else big = (big ?? BigInt(value)) + (BigInt(b & 0x7f) << BigInt(7 * i));
        if ((b & 0x80) === 0) {
          if (b === 0 && i > 0) throw new Error(`${what}: ${field}: varint not minimal`);
          if (big !== null) {
            if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
              throw new Error(`${what}: ${field}: u64 value ${big} exceeds Number.MAX_SAFE_INTEGER`);
            }
            value = Number(big);
          }
          if (bits < 64 && value >= 2 ** bits) throw new Error(`${what}: bad ${field}: ${value}`);
          return value;
        }
      }
      throw new Error("unreachable");
    },
    done() {
      if (pos !== bytes.length) throw new Error(`${what}: ${bytes.length - pos} bytes after its last field`);
    },
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
 *   | {type: "ping", nonce: number}
 *   | {type: "set_many", request_id: number, sets: {index: number, checked: boolean}[]}} msg
 *   (a set_many's indices ascend strictly; build it with `setMany`)
 * @returns {Uint8Array} the binary WebSocket payload
 * @throws {Error} on an unknown type or an out-of-range field
 */
export function encodeClient(msg) {
  switch (msg?.type) {
    case "subscribe":
    case "unsubscribe": {
      const w = writer(msg.type === "subscribe" ? 0x01 : 0x02);
      w.varint(msg.first_chunk, 32, "first_chunk");
      w.varint(msg.count, 32, "count");
      return w.done();
    }
    case "set": {
      const w = writer(0x03);
      w.varint(msg.request_id, 32, "request_id");
      w.varint(msg.index, 32, "index");
      w.u8(checkBool(msg.checked, "checked") ? 1 : 0, "checked");
      return w.done();
    }
    case "ping": {
      const w = writer(0x04);
      w.varint(msg.nonce, 32, "nonce");
      return w.done();
    }
    case "set_many": {
      const sets = msg.sets;
      if (!Array.isArray(sets) || sets.length === 0 || sets.length > MAX_SETS_PER_MESSAGE) {
        throw new Error(`set_many: sets must be an array of 1 to ${MAX_SETS_PER_MESSAGE} boxes`);
      }
      const w = writer(0x05);
      w.varint(msg.request_id, 32, "request_id");
      w.varint(sets.length, 64, "count");
      let next = 0;
      for (const e of sets) {
        const index = checkUint(e.index, 32, "index");
        if (index < next) throw new Error(`set_many: indices must ascend strictly, got ${index} after ${next - 1}`);
        w.varint((index - next) * 2 + (checkBool(e.checked, "checked") ? 1 : 0), 64, "entry");
        next = index + 1;
      }
      return w.done();
    }
    default:
      throw new Error(`encodeClient: unknown message type ${JSON.stringify(msg?.type)}`);
  }
}

/**
 * Decodes a client → gateway message, strictly (known type, minimal
 * varints within 32 bits, `checked` 0 or 1, no byte left over).
 * @param {Uint8Array|ArrayBuffer} input
 * @returns {object} a message in the shape `encodeClient` takes
 * @throws {Error} on any malformed input
 */
export function decodeClient(input) {
  const bytes = toBytes(input);
  if (bytes.length === 0) throw new Error("decodeClient: empty message");
  const type = bytes[0];
  let msg;
  let r;
  switch (type) {
    case 0x01:
    case 0x02: {
      const name = type === 0x01 ? "subscribe" : "unsubscribe";
      r = reader(bytes, name);
      msg = { type: name, first_chunk: r.varint("first_chunk", 32), count: r.varint("count", 32) };
      break;
    }
    case 0x03: {
      r = reader(bytes, "set");
      const request_id = r.varint("request_id", 32);
      const index = r.varint("index", 32);
      const checked = r.u8("checked");
      if (checked > 1) throw new Error(`set: checked must be 0 or 1, got ${checked}`);
      msg = { type: "set", request_id, index, checked: checked === 1 };
      break;
    }
    case 0x04:
      r = reader(bytes, "ping");
      msg = { type: "ping", nonce: r.varint("nonce", 32) };
      break;
    case 0x05: {
      r = reader(bytes, "set_many");
      const request_id = r.varint("request_id", 32);
      const count = r.varint("count");
      if (count === 0 || count > MAX_SETS_PER_MESSAGE) throw new Error(`set_many: bad count: ${count}`);
      const sets = [];
      let next = 0;
      for (let i = 0; i < count; i++) {
        const item = r.varint("entry");
        const index = next + Math.floor(item / 2);
        if (index > 0xffffffff) throw new Error(`set_many: bad index: ${index}`);
        sets.push({ index, checked: item % 2 === 1 });
        next = index + 1;
      }
      msg = { type: "set_many", request_id, sets };
      break;
    }
    default:
      throw new Error(`decodeClient: unknown message type 0x${type.toString(16).padStart(2, "0")}`);
  }
  r.done();
  return msg;
}

/**
 * A SetMany of `sets` given in any order: sorted by index, and of several
 * values for one box the last wins (as within one batch).
 * @param {number} request_id echoed in the AckMany
 * @param {{index: number, checked: boolean}[]} sets 1 to MAX_SETS_PER_MESSAGE distinct boxes
 * @returns {{type: "set_many", request_id: number, sets: {index: number, checked: boolean}[]}}
 */
export function setMany(request_id, sets) {
  const last = new Map();
  for (const e of sets) last.set(e.index, !!e.checked);
  const sorted = [...last].sort((a, b) => a[0] - b[0]).map(([index, checked]) => ({ index, checked }));
  return { type: "set_many", request_id, sets: sorted };
}

/**
 * The outcome of each box of a SetMany, in its (ascending) order, from
 * the runs of its AckMany.
 * @param {{runs: {len: number, status: string, seq: number}[]}} ackMany a decoded AckMany
 * @returns {{status: string, seq: number}[]}
 */
export function ackManyOutcomes(ackMany) {
  const out = [];
  for (const run of ackMany.runs) for (let i = 0; i < run.len; i++) out.push({ status: run.status, seq: run.seq });
  return out;
}

// ---------------------------------------------------------------- update entries

/** List-form item of entry `e` after offset `next - 1`: gap << 1 | checked. */
const listItem = (e, next) => (e.offset - next) * 2 + (e.checked ? 1 : 0);

/** Body bytes of both forms: `{list, bitset}` (bitset Infinity when empty). */
function formSizes(entries) {
  let list = varintLength(entries.length);
  let next = 0;
  for (const e of entries) { list += varintLength(listItem(e, next)); next = e.offset + 1; }
  if (entries.length === 0) return { list, bitset: Infinity };
  const first = entries[0].offset >> 3;
  const maskLen = (entries[entries.length - 1].offset >> 3) - first + 1;
  const bitset = varintLength(first) + varintLength(maskLen) + maskLen + Math.ceil(entries.length / 8);
  return { list, bitset };
}

function checkEntries(entries) {
  if (!Array.isArray(entries) || entries.length > MAX_CHUNK_SIZE) {
    throw new Error(`update: entries must be an array of at most ${MAX_CHUNK_SIZE} entries`);
  }
  let next = 0;
  for (const e of entries) {
    const offset = checkUint(e.offset, 15, "entry offset");
    checkBool(e.checked, "entry checked");
    if (offset < next) throw new Error(`update: entry offsets must ascend strictly, got ${offset} after ${next - 1}`);
    next = offset + 1;
  }
}

function writeEntries(w, type, entries) {
  if (type === UPDATE_LIST) {
    w.varint(entries.length, 64, "count");
    let next = 0;
    for (const e of entries) { w.varint(listItem(e, next), 64, "entry"); next = e.offset + 1; }
    return;
  }
  const first = entries[0].offset >> 3;
  const mask = new Uint8Array((entries[entries.length - 1].offset >> 3) - first + 1);
  const values = new Uint8Array(Math.ceil(entries.length / 8));
  entries.forEach((e, i) => {
    const bit = e.offset - 8 * first;
    mask[bit >> 3] |= 1 << (bit & 7);
    if (e.checked) values[i >> 3] |= 1 << (i & 7);
  });
  w.varint(first, 64, "first_byte");
  w.varint(mask.length, 64, "mask_len");
  w.bytes(mask);
  w.bytes(values);
}

function readEntries(r, type) {
  const entries = [];
  if (type === UPDATE_LIST) {
    const count = r.varint("count");
    if (count > MAX_CHUNK_SIZE) throw new Error(`update: bad count: ${count}`);
    if (count > r.remaining) throw new Error("update: ends inside entry");
    let next = 0;
    for (let i = 0; i < count; i++) {
      const item = r.varint("entry");
      const offset = next + Math.floor(item / 2);
      if (offset >= MAX_CHUNK_SIZE) throw new Error(`update: bad entry offset: ${offset}`);
      entries.push({ offset, checked: item % 2 === 1 });
      next = offset + 1;
    }
    if (entries.length > 0) {
      const sizes = formSizes(entries);
      if (sizes.bitset < sizes.list) {
        throw new Error("update: not canonical: the list form is only used when the bitset form is not smaller");
      }
    }
    return entries;
  }
  const maxBytes = MAX_CHUNK_SIZE / 8;
  const first = r.varint("first_byte");
  const maskLen = r.varint("mask_len");
  if (first >= maxBytes) throw new Error(`update: bad first_byte: ${first}`);
  if (maskLen === 0 || first + maskLen > maxBytes) throw new Error(`update: bad mask_len: ${maskLen}`);
  const mask = r.bytes(maskLen, "mask");
  if (mask[0] === 0 || mask[maskLen - 1] === 0) {
    throw new Error("update: not canonical: the bitset form's mask must start and end with a non-zero byte");
  }
  let count = 0;
  for (const b of mask) for (let bit = 0; bit < 8; bit++) count += (b >> bit) & 1;
  const values = r.bytes(Math.ceil(count / 8), "values");
  if (count % 8 !== 0 && values[values.length - 1] >> (count % 8) !== 0) {
    throw new Error("update: not canonical: the bitset form's unused value bits must be zero");
  }
  mask.forEach((b, byte) => {
    for (let bit = 0; bit < 8; bit++) {
      if (b & (1 << bit)) {
        const i = entries.length;
        entries.push({ offset: (first + byte) * 8 + bit, checked: (values[i >> 3] & (1 << (i & 7))) !== 0 });
      }
    }
  });
  const sizes = formSizes(entries);
  if (sizes.bitset >= sizes.list) {
    throw new Error("update: not canonical: the bitset form is only used when smaller than the list form");
  }
  return entries;
}

// ---------------------------------------------------------------- server messages

/**
 * The protocol version of a Hello, read before decoding it: byte 1 in
 * every version of the protocol, so a client can tell a gateway that
 * speaks another version from a malformed message.
 * @param {Uint8Array|ArrayBuffer} input a message from the gateway
 * @returns {number|null} the Hello's `protocol_version`, or null for another message
 */
export function helloVersion(input) {
  const bytes = toBytes(input);
  return bytes[0] === 0x81 && bytes.length > 1 ? bytes[1] : null;
}

/**
 * Encodes a gateway → client message (used by tests and mock gateways).
 * An Update goes out in the bitset form exactly when that is smaller.
 * @param {object} msg one of hello, update, ack, stats, versions, resync, pong, ack_many,
 *   in the shape `decodeServer` returns
 * @returns {Uint8Array} the binary WebSocket payload
 * @throws {Error} on an unknown type, status or reason, or an out-of-range field
 */
export function encodeServer(msg) {
  switch (msg?.type) {
    case "hello": {
      const w = writer(0x81);
      w.u8(msg.protocol_version, "protocol_version");
      w.varint(msg.boxes, 64, "boxes");
      w.varint(msg.chunk_size, 32, "chunk_size");
      w.varint(msg.gateway_id, 32, "gateway_id");
      w.varint(msg.load, 16, "load");
      return w.done();
    }
    case "update": {
      checkEntries(msg.entries);
      checkUint(msg.version, 64, "version");
      checkUint(msg.prev_version, 64, "prev_version");
      if (msg.prev_version > msg.version) throw new Error("update: prev_version is above version");
      const sizes = formSizes(msg.entries);
      const type = sizes.bitset < sizes.list ? UPDATE_BITSET : UPDATE_LIST;
      const w = writer(type);
      w.varint(msg.chunk, 32, "chunk");
      w.varint(msg.version, 64, "version");
      w.varint(msg.version - msg.prev_version, 64, "delta");
      writeEntries(w, type, msg.entries);
      return w.done();
    }
    case "ack": {
      const w = writer(0x83);
      w.varint(msg.request_id, 32, "request_id");
      w.u8(codeOf(ACK_STATUSES, msg.status, "ack status"), "status");
      w.varint(msg.seq, 64, "seq");
      return w.done();
    }
    case "stats": {
      const w = writer(0x84);
      w.varint(msg.checked, 64, "checked");
      w.varint(msg.online, 32, "online");
      return w.done();
    }
    case "versions": {
      const versions = msg.versions;
      if (!Array.isArray(versions) || versions.length > MAX_VERSIONS_RUN) {
        throw new Error(`versions: versions must be an array of at most ${MAX_VERSIONS_RUN} numbers`);
      }
      const w = writer(0x85);
      w.varint(msg.first_chunk, 32, "first_chunk");
      w.varint(versions.length, 64, "count");
      for (const v of versions) w.varint(v, 64, "version");
      return w.done();
    }
    case "resync": {
      const w = writer(0x86);
      w.varint(msg.first_chunk, 32, "first_chunk");
      w.varint(msg.count, 32, "count");
      w.u8(codeOf(RESYNC_REASONS, msg.reason, "resync reason"), "reason");
      return w.done();
    }
    case "pong": {
      const w = writer(0x87);
      w.varint(msg.nonce, 32, "nonce");
      return w.done();
    }
    case "ack_many": {
      const runs = msg.runs;
      if (!Array.isArray(runs) || runs.length === 0) throw new Error("ack_many: runs must be a non-empty array");
      const w = writer(0x89);
      w.varint(msg.request_id, 32, "request_id");
      w.varint(runs.length, 64, "count");
      let total = 0;
      runs.forEach((run, i) => {
        total += checkUint(run.len, 32, "run len");
        if (run.len === 0 || total > MAX_SETS_PER_MESSAGE) throw new Error(`ack_many: bad run len: ${run.len}`);
        if (i > 0 && runs[i - 1].status === run.status && runs[i - 1].seq === run.seq) {
          throw new Error("ack_many: adjacent runs must differ");
        }
        w.varint(run.len, 64, "run len");
        w.u8(codeOf(ACK_STATUSES, run.status, "ack status"), "status");
        w.varint(run.seq, 64, "seq");
      });
      return w.done();
    }
    default:
      throw new Error(`encodeServer: unknown message type ${JSON.stringify(msg?.type)}`);
  }
}

/**
 * Decodes a gateway → client message, strictly (known type, minimal
 * varints within their field's width, an Update's delta at most its
 * version, one encoding per message, known ack status and resync reason,
 * u64 values within Number.MAX_SAFE_INTEGER, no byte left over).
 * @param {Uint8Array|ArrayBuffer} input e.g. `event.data` with `binaryType = "arraybuffer"`
 * @returns {object} e.g. `{type: "update", chunk, prev_version, version, entries: [{offset, checked}]}`
 * @throws {Error} on any malformed input
 */
export function decodeServer(input) {
  const bytes = toBytes(input);
  if (bytes.length === 0) throw new Error("decodeServer: empty message");
  const type = bytes[0];
  let msg;
  let r;
  switch (type) {
    case 0x81:
      r = reader(bytes, "hello");
      msg = {
        type: "hello",
        protocol_version: r.u8("protocol_version"),
        boxes: r.varint("boxes"),
        chunk_size: r.varint("chunk_size", 32),
        gateway_id: r.varint("gateway_id", 32),
        load: r.varint("load", 16),
      };
      break;
    case UPDATE_LIST:
    case UPDATE_BITSET: {
      r = reader(bytes, "update");
      const chunk = r.varint("chunk", 32);
      const version = r.varint("version");
      const delta = r.varint("delta");
      if (delta > version) throw new Error(`update: delta ${delta} is larger than its version ${version}`);
      const entries = readEntries(r, type);
      msg = { type: "update", chunk, prev_version: version - delta, version, entries };
      break;
    }
    case 0x83: {
      r = reader(bytes, "ack");
      const request_id = r.varint("request_id", 32);
      const status = nameOf(ACK_STATUSES, r.u8("status"), "ack status");
      msg = { type: "ack", request_id, status, seq: r.varint("seq") };
      break;
    }
    case 0x84:
      r = reader(bytes, "stats");
      msg = { type: "stats", checked: r.varint("checked"), online: r.varint("online", 32) };
      break;
    case 0x85: {
      r = reader(bytes, "versions");
      const first_chunk = r.varint("first_chunk", 32);
      const count = r.varint("count");
      if (count > MAX_VERSIONS_RUN) throw new Error(`versions: bad count: ${count}`);
      const versions = [];
      for (let i = 0; i < count; i++) versions.push(r.varint("version"));
      msg = { type: "versions", first_chunk, versions };
      break;
    }
    case 0x86: {
      r = reader(bytes, "resync");
      const first_chunk = r.varint("first_chunk", 32);
      const count = r.varint("count", 32);
      const reason = nameOf(RESYNC_REASONS, r.u8("reason"), "resync reason");
      msg = { type: "resync", first_chunk, count, reason };
      break;
    }
    case 0x87:
      r = reader(bytes, "pong");
      msg = { type: "pong", nonce: r.varint("nonce", 32) };
      break;
    case 0x89: {
      r = reader(bytes, "ack_many");
      const request_id = r.varint("request_id", 32);
      const count = r.varint("count");
      if (count === 0 || count > MAX_SETS_PER_MESSAGE) throw new Error(`ack_many: bad count: ${count}`);
      const runs = [];
      let total = 0;
      for (let i = 0; i < count; i++) {
        const len = r.varint("run len");
        total += len;
        if (len === 0 || total > MAX_SETS_PER_MESSAGE) throw new Error(`ack_many: bad run len: ${len}`);
        const run = { len, status: nameOf(ACK_STATUSES, r.u8("status"), "ack status"), seq: r.varint("seq") };
        const prev = runs[runs.length - 1];
        if (prev && prev.status === run.status && prev.seq === run.seq) {
          throw new Error("ack_many: not canonical: adjacent runs have the same outcome");
        }
        runs.push(run);
      }
      msg = { type: "ack_many", request_id, runs };
      break;
    }
    default:
      throw new Error(`decodeServer: unknown message type 0x${type.toString(16).padStart(2, "0")}`);
  }
  r.done();
  return msg;
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
