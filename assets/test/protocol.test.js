import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  encodeClient, decodeClient, encodeServer, decodeServer,
  bitsetGet, bitsetSet, bitsetEncode, applyUpdate,
} from "../js/protocol.js";

const vectors = JSON.parse(
  readFileSync(new URL("../../testdata/protocol-vectors.json", import.meta.url), "utf8"),
);

const fromHex = (hex) => Uint8Array.from(hex.match(/../g) ?? [], (b) => parseInt(b, 16));
const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

for (const v of vectors.client) {
  test(`client vector: ${v.name}`, () => {
    assert.deepEqual(decodeClient(fromHex(v.hex)), v.message);
    assert.equal(toHex(encodeClient(v.message)), v.hex);
  });
}

for (const v of vectors.server) {
  test(`server vector: ${v.name}`, () => {
    assert.deepEqual(decodeServer(fromHex(v.hex)), v.message);
    assert.equal(toHex(encodeServer(v.message)), v.hex);
  });
}

for (const v of vectors.malformed_client) {
  test(`malformed client vector is refused: ${v.name}`, () => {
    assert.throws(() => decodeClient(fromHex(v.hex)), Error);
  });
}

for (const v of vectors.bitsets) {
  test(`bitset vector: ${v.name}`, () => {
    assert.equal(toHex(bitsetEncode(v.start, v.len, v.checked)), v.hex);
  });
}

test("vector sets are not empty", () => {
  for (const key of ["client", "server", "malformed_client", "bitsets"]) {
    assert.ok(vectors[key].length > 0, key);
  }
});

test("decodeServer is strict", () => {
  const ack = fromHex("832a000000010000000000000000");
  assert.throws(() => decodeServer(ack.subarray(0, 13)), /ack: expected 14 bytes/);
  const badStatus = ack.slice();
  badStatus[5] = 5;
  assert.throws(() => decodeServer(badStatus), /ack status: unknown code 5/);
  assert.throws(() => decodeServer(fromHex("8600000000f400000002")), /resync reason/);
  assert.throws(() => decodeServer(fromHex("0401000000")), /unknown message type 0x04/);
  assert.throws(() => decodeServer(new Uint8Array(0)), /empty/);
  // Update whose count promises one entry more than it carries.
  assert.throws(() => decodeServer(fromHex("82ffffffff010000000000000002000000000000000100")), /update/);
  // Versions with a trailing byte.
  assert.throws(() => decodeServer(fromHex("850300000001000100000000000000ff")), /versions/);
});

test("u64 above Number.MAX_SAFE_INTEGER is refused", () => {
  const stats = fromHex("84ffffffffffffffff983a0000");
  assert.throws(() => decodeServer(stats), /checked.*MAX_SAFE_INTEGER/);
  assert.throws(() => encodeServer({ type: "stats", checked: 2 ** 53, online: 1 }), /checked/);
  const max = { type: "stats", checked: Number.MAX_SAFE_INTEGER, online: 1 };
  assert.deepEqual(decodeServer(encodeServer(max)), max);
});

test("encoders refuse bad fields", () => {
  assert.throws(() => encodeClient({ type: "set", request_id: 1, index: 2 ** 32, checked: true }), /index/);
  assert.throws(() => encodeClient({ type: "set", request_id: 1, index: 0, checked: 1 }), /checked/);
  assert.throws(() => encodeClient({ type: "nope" }), /unknown message type/);
  assert.throws(() => encodeServer({ type: "ack", request_id: 1, status: "bogus", seq: 0 }), /ack status/);
  assert.throws(() => encodeServer({
    type: "update", chunk: 0, prev_version: 0, version: 1, entries: [{ offset: 32768, checked: true }],
  }), /offset/);
});

test("decoders accept an ArrayBuffer and an offset view", () => {
  const hex = "8701000000";
  assert.deepEqual(decodeServer(fromHex(hex).buffer), { type: "pong", nonce: 1 });
  const padded = fromHex("ff" + hex);
  assert.deepEqual(decodeServer(padded.subarray(1)), { type: "pong", nonce: 1 });
});

test("bitsetGet/bitsetSet are LSB-first", () => {
  const bits = new Uint8Array(2);
  bitsetSet(bits, 0, true);
  bitsetSet(bits, 9, true);
  bitsetSet(bits, 15, true);
  assert.equal(toHex(bits), "0182"); // byte 0 = bit 0, byte 1 = bits 1 and 7
  assert.equal(bitsetGet(bits, 0), true);
  assert.equal(bitsetGet(bits, 7), false);
  assert.equal(bitsetGet(bits, 9), true);
  assert.equal(bitsetGet(bits, 15), true);
  bitsetSet(bits, 9, false);
  assert.equal(bitsetGet(bits, 9), false);
  assert.equal(toHex(bits), "0180");
  assert.throws(() => bitsetSet(bits, 16, true), RangeError);
  for (const v of vectors.bitsets) {
    const encoded = fromHex(v.hex);
    for (let i = 0; i < v.len; i++) {
      const expected = v.checked.includes(v.start + i);
      assert.equal(bitsetGet(encoded, i), expected, `${v.name}: offset ${i}`);
    }
  }
});

const update = (prev_version, version, entries) =>
  ({ type: "update", chunk: 0, prev_version, version, entries });

test("applyUpdate applies when prev_version <= v < version", () => {
  const state = { version: 11, bits: new Uint8Array([0x00, 0x02]) };
  const result = applyUpdate(state, update(10, 12, [
    { offset: 0, checked: true },
    { offset: 9, checked: false },
    { offset: 15, checked: true },
  ]));
  assert.equal(result, "applied");
  assert.equal(state.version, 12);
  assert.equal(toHex(state.bits), "0180");
  // prev_version == v is applied too.
  assert.equal(applyUpdate(state, update(12, 13, [{ offset: 0, checked: false }])), "applied");
  assert.equal(state.version, 13);
  assert.equal(bitsetGet(state.bits, 0), false);
});

test("applyUpdate ignores an update with version <= v", () => {
  for (const version of [12, 5]) {
    const state = { version: 12, bits: new Uint8Array([0x00]) };
    assert.equal(applyUpdate(state, update(version - 1, version, [{ offset: 3, checked: true }])), "ignored");
    assert.equal(state.version, 12);
    assert.equal(state.bits[0], 0);
  }
});

test("applyUpdate asks for a refetch when v < prev_version", () => {
  const state = { version: 9, bits: new Uint8Array([0x00]) };
  assert.equal(applyUpdate(state, update(10, 12, [{ offset: 3, checked: true }])), "refetch");
  assert.equal(state.version, 9);
  assert.equal(state.bits[0], 0);
});

test("applyUpdate refuses an out-of-chunk offset without mutating", () => {
  const state = { version: 1, bits: new Uint8Array([0x00]) };
  assert.throws(() => applyUpdate(state, update(1, 2, [
    { offset: 0, checked: true }, { offset: 8, checked: true },
  ])), RangeError);
  assert.deepEqual(state, { version: 1, bits: new Uint8Array([0x00]) });
});
