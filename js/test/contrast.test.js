import { test } from "node:test";
import assert from "node:assert/strict";
import { ContrastStore, bareWord, contrastKey, contrastAt, contrastLegend, pixelSigned, signedScale } from "../src/contraststore.js";
import { TimeAxis } from "../src/timeaxis.js";

const C = { token: 3, target: "John", foil: "hearts", delta: 3.25, delta_silence: -7.5, total: 10.7, peak_s: 0.45,
  start_frame: 10, map: new Float32Array([0.1, -0.4, 0, 2, -0.5]) };

test("bareWord strips spaces and punctuation like audit/contrast.py, contrastKey like contrast_key", () => {
  assert.equal(bareWord(" hearts. "), "hearts");
  assert.equal(bareWord('"Hearts,"'), "Hearts");
  assert.equal(bareWord("\u201cclubs\u201d!"), "clubs");
  assert.equal(bareWord("[x]\\"), "x");
  assert.equal(bareWord("rock-n-roll"), "rock-n-roll", "only the edges");
  assert.equal(bareWord(" ... "), "");
  assert.equal(contrastKey(3, ' "Hearts," '), "3|contrast|Hearts");
});

test("pixelSigned keeps the sign of the strongest frame per pixel column", () => {
  const frameS = 0.02, axis = new TimeAxis(1, 50); // 0.02 s per pixel: one frame per column
  const cols = pixelSigned(C.map, C.start_frame, frameS, axis);
  assert.deepEqual([...cols.slice(9, 16)].map((v) => +v.toFixed(2)), [0, 0.1, -0.4, 0, 2, -0.5, 0]);
  const coarse = pixelSigned(C.map, C.start_frame, frameS, new TimeAxis(1, 10)); // 5 frames per column
  assert.equal(coarse[2], 2); // frames 10..14: the largest magnitude, positive
  const neg = pixelSigned(new Float32Array([0.3, -0.9]), 0, frameS, new TimeAxis(1, 10));
  assert.equal(+neg[0].toFixed(2), -0.9, "a stronger negative frame wins the column");
  assert.equal(signedScale(C.map), 2);
});

test("legend names what each colour favours and the delta", () => {
  const l = contrastLegend(C);
  assert.deepEqual([l.pos, l.neg, l.delta], ['favours "John"', 'favours "hearts"', "Δ log p +3.25"]);
  assert.match(l.title, /= \+3\.25 on this audio, -7\.50 on silence; the lane adds up to \+10\.70\. Most in favour of "John" at 0\.45 s/);
  assert.equal(contrastLegend({ ...C, delta: null }).delta, "Δ log p –");
});

test("contrastAt: the frame under the pointer and whom it favours", () => {
  assert.deepEqual(contrastAt(C, 0.265, 0.02), { value: 2, favours: "John" });
  assert.deepEqual(contrastAt(C, 0.225, 0.02), { value: Math.fround(-0.4), favours: "hearts" });
  assert.equal(contrastAt(C, 0.1, 0.02), null);
});

test("store: one request per key, the binary map decoded, errors and cancellations reject", async () => {
  const sent = [];
  const s = new ContrastStore((m) => sent.push(m));
  const p = s.request(3, " hearts.");
  assert.equal(s.request(3, "hearts"), p, "the same key: one request");
  assert.equal(sent.length, 1);
  assert.deepEqual({ ...sent[0], id: "x" }, { type: "contrast", id: "x", key: "3|contrast|hearts", token: 3, foil: "hearts", selected: 3 });
  const buf = new Float32Array([1, -2]).buffer;
  assert.ok(s.receive({ type: "contrast", id: sent[0].id, ids: [sent[0].id], key: "3|contrast|hearts", token: 3,
    target: "John", foil: "hearts", delta: 1.5, start_frame: 0, n_frames: 2, dtype: "float32" }, [new DataView(buf)]));
  const c = await p;
  assert.deepEqual([...c.map], [1, -2]);
  assert.equal(s.get(3, "hearts"), c);
  const bad = s.request(3, "John");
  s.receive({ type: "error", id: sent[1].id, message: "ValueError: the foil 'John' is the word the model wrote; type another word" });
  await assert.rejects(bad, /^Error: the foil 'John' is the word the model wrote/);
  const gone = s.request(4, "hearts");
  s.receive({ type: "cancelled", id: sent[2].id, reason: "deselected" });
  await assert.rejects(gone, (e) => e.cancelled && e.reason === "deselected");
  assert.equal(s.receive({ type: "map", id: "other" }), false, "not the store's");
});
