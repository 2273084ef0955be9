import { test } from "node:test";
import assert from "node:assert/strict";
import { typedArray, decodeArray, pcm16ToFloat32, dequantize, ChunkAssembler, base64ToBytes } from "../src/codecs.js";
import { TimeAxis, visibleRange } from "../src/timeaxis.js";
import { massRegions, wordSpans, spanAt } from "../src/regions.js";
import { binOfTime, tokensAt, tokenUnder, rowAtY } from "../src/lookup.js";
import { makeLut, confidenceAlpha } from "../src/colors.js";
import { mapKey, pixelMax, MapStore } from "../src/mapstore.js";

test("typedArray respects byteOffset of a DataView", () => {
  const buf = new ArrayBuffer(16);
  new Float32Array(buf).set([1, 2, 3, 4]);
  const dv = new DataView(buf, 4, 8);
  assert.deepEqual(Array.from(typedArray("float32", dv)), [2, 3]);
});

test("typedArray copies when the offset is misaligned", () => {
  const bytes = new Uint8Array(9);
  new DataView(bytes.buffer).setInt16(1, -2, true);
  new DataView(bytes.buffer).setInt16(3, 300, true);
  const arr = typedArray("int16", new DataView(bytes.buffer, 1, 4));
  assert.deepEqual(Array.from(arr), [-2, 300]);
});

test("typedArray rejects unknown dtypes and ragged lengths", () => {
  assert.throws(() => typedArray("float16", new ArrayBuffer(4)), /unsupported dtype/);
  assert.throws(() => typedArray("float32", new ArrayBuffer(6)), /whole number/);
});

test("decodeArray checks the shape", () => {
  const view = new DataView(new Uint8Array([1, 2, 3, 4, 5, 6]).buffer);
  assert.deepEqual(decodeArray({ view, dtype: "uint8", shape: [2, 3] }).shape, [2, 3]);
  assert.throws(() => decodeArray({ view, dtype: "uint8", shape: [4, 2] }), /needs 8/);
});

test("pcm16 and dequantize round trips", () => {
  const f = pcm16ToFloat32(new Int16Array([-32768, 0, 16384]));
  assert.deepEqual(Array.from(f), [-1, 0, 0.5]);
  const d = dequantize(new Uint8Array([0, 255, 51]), -2, 3);
  assert.ok(Math.abs(d[0] + 2) < 1e-6 && Math.abs(d[1] - 3) < 1e-6 && Math.abs(d[2] + 1) < 1e-6);
});

test("ChunkAssembler fills in any order and reports completion", () => {
  const a = new ChunkAssembler(Int16Array, 5);
  assert.equal(a.put(3, new Int16Array([4, 5])), false);
  assert.equal(a.put(0, new Int16Array([1, 2, 3])), true);
  assert.deepEqual(Array.from(a.data), [1, 2, 3, 4, 5]);
  assert.throws(() => a.put(4, new Int16Array([1, 2])), /outside/);
});

test("base64ToBytes", () => {
  assert.deepEqual(Array.from(base64ToBytes("AQL/")), [1, 2, 255]);
});

test("TimeAxis maps time <-> pixel and zooms around an anchor", () => {
  const ax = new TimeAxis(10, 1000);
  assert.equal(ax.timeToX(5), 500);
  assert.equal(ax.xToTime(250), 2.5);
  ax.zoom(0.5, 2.5);
  assert.equal(ax.span, 5);
  assert.ok(Math.abs(ax.timeToX(2.5) - 250) < 1e-9, "anchor keeps its pixel");
  ax.scrollBy(100);
  assert.equal(ax.t0, 5, "clamped at the end");
  ax.zoom(100);
  assert.deepEqual([ax.t0, ax.span], [0, 10], "cannot zoom out past the whole clip");
  ax.zoom(1e-9);
  assert.equal(ax.span, 0.05, "minimum span");
});

test("TimeAxis follow pages to the playhead and notifies listeners", () => {
  const ax = new TimeAxis(60, 600);
  ax.setView(0, 10);
  let calls = 0;
  const off = ax.onChange(() => calls++);
  assert.equal(ax.follow(5), false);
  assert.equal(ax.follow(30), true);
  assert.ok(ax.t0 <= 30 && ax.t1 >= 30);
  off();
  ax.fit();
  assert.equal(calls, 1);
});

test("visibleRange", () => {
  const ax = new TimeAxis(10, 100);
  ax.setView(2, 1);
  assert.deepEqual(visibleRange(ax, 0.02, 500), [100, 151]);
});

test("massRegions picks the fewest frames holding the mass and merges runs", () => {
  const map = new Float32Array([0, 0.1, 0.4, 0.3, 0, 0, 0, 0.2, 0]);
  assert.deepEqual(massRegions(map, { frac: 0.5, maxGap: 0 }), [{ start: 2, end: 4 }]);
  assert.deepEqual(massRegions(map, { frac: 0.85, maxGap: 0, startFrame: 10 }),
    [{ start: 12, end: 14 }, { start: 17, end: 18 }]);
  assert.deepEqual(massRegions(map, { frac: 0.85, maxGap: 3 }), [{ start: 2, end: 8 }]);
  assert.deepEqual(massRegions(new Float32Array(3)), []);
});

test("wordSpans splits between peaks and caps the width", () => {
  const s = wordSpans([0.5, 1.0, 3.0], 3.2, { maxHalf: 0.4 });
  assert.deepEqual(s.map((x) => [x.start, x.end].map((v) => +v.toFixed(3))),
    [[0.1, 0.75], [0.75, 1.4], [2.6, 3.2]]);
  assert.equal(spanAt(s, 0.8), 1);
  assert.equal(spanAt(s, 2.0), -1);
});

test("reverse lookup from the overview", () => {
  // 3 tokens x 4 bins
  const ov = new Uint8Array([255, 100, 0, 0, 0, 255, 200, 0, 0, 0, 90, 255]);
  assert.equal(binOfTime(9.99, 10, 4), 3);
  assert.equal(binOfTime(-1, 10, 4), 0);
  assert.deepEqual(tokensAt(ov, 3, 4, 1).map((x) => x.token), [1, 0]);
  assert.deepEqual(tokensAt(ov, 3, 4, 2).map((x) => x.token), [1, 2]);
  assert.equal(tokenUnder(ov, 3, 4, 2), 1);
  assert.equal(tokenUnder(ov, 3, 4, 0), 0);
  assert.equal(tokenUnder(new Uint8Array(12), 3, 4, 0), -1);
  assert.equal(rowAtY(59, 60, 3), 2);
});

test("mapKey only keeps the method's own parameters, sorted", () => {
  const methods = { base: { params: { tau: 1, depth: "full" } }, ig: { params: {} } };
  assert.equal(mapKey(3, "base", { depth: "one", tau: 2, junk: 1 }, methods), "3|base|depth=one|tau=2");
  assert.equal(mapKey(3, "ig", { tau: 2 }, methods), "3|ig|");
});

test("pixelMax aggregates frames into pixel columns", () => {
  const ax = new TimeAxis(1, 4); // 4 pixels, 0.25 s each
  const map = new Float32Array([1, 2, 3, 4, 5]); // frames of 0.1 s starting at frame 2 (0.2 s)
  const cols = pixelMax(map, 2, 0.1, ax);
  assert.deepEqual(Array.from(cols), [1, 3, 5, 0]);
});

test("LUT and confidence", () => {
  const lut = makeLut([[0, 0, 0], [255, 255, 255]]);
  assert.deepEqual(Array.from(lut.slice(255 * 4, 256 * 4)), [255, 255, 255, 255]);
  assert.equal(confidenceAlpha(0), 0);
  assert.ok(confidenceAlpha(Math.log(0.2)) > 0.5);
});

test("MapStore: requests carry the selection; progress, merged replies, cancel and cancelled", async () => {
  const sent = [];
  const methods = { ig: { params: {} }, base: { params: { tau: 1 } } };
  const store = new MapStore((c) => sent.push(c), methods);
  const a = store.request(3, "ig", {}, { selected: 3 });
  const b = store.request(4, "base", { tau: 1 }, { selected: 3 }); // a prefetch while 3 is shown
  assert.equal(store.request(3, "ig", {}), a, "one request per key in flight");
  assert.deepEqual(sent.map((m) => [m.type, m.token, m.selected]), [["map", 3, 3], ["map", 4, 3]]);
  // the kernel starts the slow one: the busy marker can show its note
  store.receive({ type: "progress", ids: ["x", sent[0].id], key: sent[0].key, note: "computing IG for token 3", expected_s: 2 });
  assert.equal(store.running().length, 1);
  assert.equal(store.running()[0].running.note, "computing IG for token 3");
  // a merged reply names this request among its ids
  const buf = new Float32Array([0.25, 0.75]).buffer;
  store.receive({ type: "map", id: "other-view", ids: ["other-view", sent[0].id], key: sent[0].key, start_frame: 0 }, [buf]);
  assert.deepEqual(Array.from((await a).map), [0.25, 0.75]);
  // cancel sends the pending ids; the kernel's confirmation rejects with a CancelledError
  assert.equal(store.cancel(), 1);
  assert.deepEqual(sent.at(-1), { type: "cancel", ids: [sent[1].id] });
  store.receive({ type: "cancelled", id: sent[1].id, ids: [sent[1].id], key: sent[1].key, reason: "user" });
  await assert.rejects(b, (err) => err.cancelled && err.reason === "user");
  assert.equal(store.busy, false);
  assert.equal(store.cancel(), 0, "nothing left to cancel");
  // a request dropped by the kernel can be made again
  store.request(4, "base", { tau: 1 });
  assert.equal(sent.at(-1).type, "map");
});

import { appendFrom, fmtClock, decodingStatus } from "../src/stream.js";

test("appendFrom adds only new items, and reports a gap", () => {
  const list = ["a", "b"];
  assert.equal(appendFrom(list, 2, ["c", "d"]), 2);
  assert.deepEqual(list, ["a", "b", "c", "d"]);
  assert.equal(appendFrom(list, 0, ["a", "b", "c", "d", "e"]), 1); // a catch-up repeats the start
  assert.equal(appendFrom(list, 3, ["d"]), 0); // a message already applied
  assert.deepEqual(list, ["a", "b", "c", "d", "e"]);
  assert.equal(appendFrom(list, 7, ["h"]), -1); // items 5 and 6 are missing
  assert.equal(list.length, 5);
});

test("fmtClock writes m:ss and h:mm:ss", () => {
  assert.equal(fmtClock(0), "0:00");
  assert.equal(fmtClock(150.9), "2:30");
  assert.equal(fmtClock(600), "10:00");
  assert.equal(fmtClock(3725), "1:02:05");
});

test("decodingStatus shows progress until complete", () => {
  assert.deepEqual(decodingStatus(150, 600), { visible: true, text: "decoding 2:30 / 10:00", fraction: 0.25 });
  assert.equal(decodingStatus(600, 600, { complete: true }).visible, false);
  assert.match(decodingStatus(90, 600, { stopped: true }).text, /^decoding stopped at 1:30/);
  assert.equal(decodingStatus(5, 0).fraction, 1);
});
