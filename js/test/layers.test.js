import { test } from "node:test";
import assert from "node:assert/strict";
import { LayerStore, layersKey, lensCells, rankShade, spanAt, spanBars, patchingSummary } from "../src/layerstore.js";
import { TimeAxis } from "../src/timeaxis.js";

const LENS = { token: 3, text: " John", layers: ["dec.0", "dec.1", "dec.2", "dec.3"],
  logprob: [-10.6, -9.5, -5.7, -0.02], rank: [7773, 2204, 16, 0],
  top: [[[" (", 0.019]], [["p", 0.02]], [[" j", 0.03], [" G", 0.016]], [[" John", 0.98], [" Jon", 0.011]]] };
const PATCH = { over: "time", corrupt: "noise -10dB", effect: [0.1, null, 0.9, 2.5], logprob: [-1.5, null, -0.1, 0],
  clean_logprob: -0.02, corrupt_logprob: -1.76, start_s: [0, 1, 2, 3], end_s: [1, 2, 3, 4] };

test("layersKey matches layers_key in widget/layers.py", () => {
  assert.equal(layersKey("lens", 3), "3|lens");
  assert.equal(layersKey("patching", 3, "noise"), "3|patching|noise");
});

test("rank shade: strongest at the top rank, falling with the rank", () => {
  assert.equal(rankShade(0), 1);
  assert.equal(rankShade(1), 0.5);
  assert.ok(rankShade(16) > rankShade(2204) && rankShade(2204) > 0);
  assert.equal(rankShade(null), 0);
});

test("lens cells: one per layer, the top alternative shown, all of them on hover", () => {
  const cells = lensCells(LENS);
  assert.deepEqual(cells.map((c) => [c.name, c.rank, c.top1]),
    [["dec.0", 7773, " ("], ["dec.1", 2204, "p"], ["dec.2", 16, " j"], ["dec.3", 0, " John"]]);
  assert.match(cells[2].title, /^dec\.2: " John" ranks #17 \(log p -5\.70\)\ntop: " j" 0\.030, " G" 0\.016$/);
});

test("spans: the one under a time, pixel bars clamped, null effects left out", () => {
  assert.equal(spanAt(PATCH, 2.5), 2);
  assert.equal(spanAt(PATCH, 4), -1);
  const axis = new TimeAxis(4, 400);
  const bars = spanBars(PATCH, axis);
  assert.deepEqual(bars.map((b) => [b.i, b.x0, b.x1, b.effect]), [[0, 0, 100, 0.1], [2, 200, 300, 0.9], [3, 300, 400, 1.5]]);
  axis.setView(0, 1.5); // zoomed in: spans off screen are skipped
  assert.deepEqual(spanBars(PATCH, axis).map((b) => b.i), [0]);
});

test("patching summary says when the corruption does not change the token", () => {
  assert.equal(patchingSummary(PATCH), "clean log p -0.02, corrupted -1.76");
  assert.match(patchingSummary({ ...PATCH, corrupt_logprob: -0.03 }), /barely changes this token/);
  assert.match(patchingSummary({ ...PATCH, clean_logprob: null }), /barely changes/);
});

test("store: one request per key, replies resolve and cache, errors and cancels reject", async () => {
  const sent = [];
  const s = new LayerStore((c) => sent.push(c));
  const a = s.request("lens", 3), b = s.request("lens", 3);
  assert.equal(a, b);
  const p = s.request("patching", 3, "silence");
  const q = s.request("patching", 4, "noise");
  assert.deepEqual(sent.map((c) => [c.type, c.token, c.corrupt, c.selected]),
    [["lens", 3, undefined, 3], ["patching", 3, "silence", 3], ["patching", 4, "noise", 4]]);
  assert.equal(s.receive({ type: "map", id: "x" }), false, "a map reply is the map store's");
  assert.equal(s.receive({ type: "error", id: "someone-else", message: "no" }), false);
  assert.ok(s.receive({ type: "lens", id: sent[0].id, ids: [sent[0].id], token: 3, lens: LENS }));
  assert.deepEqual(await a, LENS);
  assert.deepEqual(s.get("lens", 3), LENS);
  assert.ok(s.receive({ type: "error", id: sent[1].id, message: "ValueError: corrupt must be one of" }));
  await assert.rejects(p, /corrupt must be one of/);
  assert.equal(s.cancel(), 1);
  assert.deepEqual(sent.at(-1), { type: "cancel", ids: [sent[2].id] });
  assert.ok(s.receive({ type: "cancelled", id: sent[2].id, reason: "user" }));
  await assert.rejects(q, (e) => e.cancelled && e.reason === "user");
  assert.equal(s.pending.size, 0);
  // another view's result fills the cache too
  assert.ok(s.receive({ type: "patching", id: "other", token: 5, corrupt: "noise", patching: PATCH }));
  assert.deepEqual(await s.request("patching", 5, "noise"), PATCH);
});
