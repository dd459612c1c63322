import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  encodeClient, decodeClient, encodeServer, decodeServer,
  bitsetGet, bitsetSet, bitsetEncode, applyUpdate, helloVersion, MAX_CHUNK_SIZE,
  setMany, ackManyOutcomes, MAX_SETS_PER_MESSAGE,
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
    if (v.js_unsafe) {
      // A value past 2^53 - 1: refused rather than rounded.
      assert.throws(() => decodeServer(fromHex(v.hex)), /MAX_SAFE_INTEGER/);
      return;
    }
    assert.deepEqual(decodeServer(fromHex(v.hex)), v.message);
    assert.equal(toHex(encodeServer(v.message)), v.hex);
  });
}

for (const v of vectors.malformed_server) {
  test(`malformed server vector is refused: ${v.name}`, () => {
    assert.throws(() => decodeServer(fromHex(v.hex)), Error);
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
  for (const key of ["client", "server", "malformed_client", "malformed_server", "bitsets"]) {
    assert.ok(vectors[key].length > 0, key);
  }
});

test("decodeServer is strict", () => {
  const ack = fromHex("832a0100");
  assert.throws(() => decodeServer(ack.subarray(0, 3)), /ack: ends inside seq/);
  const badStatus = ack.slice();
  badStatus[2] = 5;
  assert.throws(() => decodeServer(badStatus), /ack status: unknown code 5/);
  assert.throws(() => decodeServer(fromHex("86007402")), /resync reason/);
  assert.throws(() => decodeServer(fromHex("0401")), /unknown message type 0x04/);
  assert.throws(() => decodeServer(new Uint8Array(0)), /empty/);
  assert.throws(() => decodeServer(fromHex("8201050600")), /delta 6 is larger than its version 5/);
  assert.throws(() => decodeServer(fromHex("820180")), /ends inside version/);
  assert.throws(() => decodeServer(fromHex("8201" + "ff".repeat(10) + "0100")), /longer than 10 bytes/);
  assert.throws(() => decodeServer(fromHex("8201810000")), /not minimal/);
  // Versions with a trailing byte.
  assert.throws(() => decodeServer(fromHex("85030101ff")), /versions: 1 bytes after/);
});

test("u64 above Number.MAX_SAFE_INTEGER is refused", () => {
  const stats = fromHex("84ffffffffffffffffff0101");
  assert.throws(() => decodeServer(stats), /checked.*MAX_SAFE_INTEGER/);
  assert.throws(() => encodeServer({ type: "stats", checked: 2 ** 53, online: 1 }), /checked/);
  const max = { type: "stats", checked: Number.MAX_SAFE_INTEGER, online: 1 };
  assert.deepEqual(decodeServer(encodeServer(max)), max);
});

test("an Update takes the smaller form, up to every box of the largest chunk", () => {
  const all = Array.from({ length: MAX_CHUNK_SIZE }, (_, offset) => ({ offset, checked: offset % 3 === 0 }));
  const full = { type: "update", chunk: 1, prev_version: 7, version: 9, entries: all };
  const bytes = encodeServer(full);
  // Bitset form: type, chunk, version, delta, first_byte, mask_len (2 bytes),
  // 4096 bytes of mask, 4096 of values; the list form would take 32,772.
  assert.equal(bytes[0], 0x88);
  assert.equal(bytes.length, 6 + 2 * 4096 + 1);
  assert.deepEqual(decodeServer(bytes), full);
  const one = { type: "update", chunk: 12, prev_version: 999960, version: 1000000, entries: [{ offset: 3000, checked: true }] };
  assert.equal(encodeServer(one).length, 9);
  assert.throws(() => encodeServer({ ...one, entries: [{ offset: 5, checked: true }, { offset: 5, checked: false }] }), /ascend/);
  assert.throws(() => encodeServer({ ...one, prev_version: one.version + 1 }), /prev_version/);
});

test("helloVersion reads byte 1 of a Hello only", () => {
  assert.equal(helloVersion(fromHex("8102c0843d802007fa01")), 2);
  assert.equal(helloVersion(Uint8Array.from([0x81, 1, 0, 0])), 1);
  assert.equal(helloVersion(fromHex("8701")), null);
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
  const hex = "8701";
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

test("setMany sorts, keeps the last value of a box, and encodes one byte per neighbour", () => {
  const msg = setMany(7, [
    { index: 12, checked: true }, { index: 10, checked: true }, { index: 12, checked: false }, { index: 11, checked: true },
  ]);
  assert.deepEqual(msg.sets, [
    { index: 10, checked: true }, { index: 11, checked: true }, { index: 12, checked: false },
  ]);
  assert.equal(toHex(encodeClient(msg)), "050703150100");
  assert.deepEqual(decodeClient(encodeClient(msg)), msg);
});

test("set_many edges: the largest count and index encode; 0, 257 and unsorted are refused", () => {
  const sets = [];
  for (let i = 0; i < MAX_SETS_PER_MESSAGE - 1; i++) sets.push({ index: i, checked: i % 2 === 0 });
  sets.push({ index: 0xffffffff, checked: true });
  const bytes = encodeClient({ type: "set_many", request_id: 0xffffffff, sets });
  assert.equal(bytes.length, 1 + 5 + 2 + 255 + 5);
  assert.deepEqual(decodeClient(bytes).sets, sets);
  assert.throws(() => encodeClient({ type: "set_many", request_id: 1, sets: [] }), /1 to 256/);
  assert.throws(() => encodeClient({ type: "set_many", request_id: 1, sets: [...sets, { index: 0, checked: true }] }));
  assert.throws(
    () => encodeClient({ type: "set_many", request_id: 1, sets: [{ index: 2, checked: true }, { index: 2, checked: true }] }),
    /ascend/,
  );
});

test("ackManyOutcomes expands runs in the SetMany's order", () => {
  const ack = decodeServer(fromHex("89030302000901000a010100"));
  assert.deepEqual(ackManyOutcomes(ack), [
    { status: "applied", seq: 9 }, { status: "applied", seq: 9 },
    { status: "applied", seq: 10 }, { status: "rate_limited", seq: 0 },
  ]);
});
