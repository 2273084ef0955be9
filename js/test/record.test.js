import { test } from "node:test";
import assert from "node:assert/strict";
import { StreamResampler, TakeChunker, rms, mixToMono, micErrorMessage, clock } from "../src/resample.js";

const tone = (f, rate, n, phase = 0) => Float32Array.from({ length: n }, (_, i) => Math.sin(2 * Math.PI * f * i / rate + phase));

function resampleInBlocks(x, inRate, sizes) {
  const r = new StreamResampler(inRate, 16000);
  const parts = [];
  let i = 0, j = 0;
  while (i < x.length) {
    const n = sizes[j++ % sizes.length];
    parts.push(r.push(x.subarray(i, i + n)));
    i += n;
  }
  parts.push(r.flush());
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

for (const inRate of [48000, 44100, 22050]) {
  test(`a ${inRate} Hz tone resamples to 16 kHz with its phase, at the right length`, () => {
    const n = inRate; // one second
    const x = tone(440, inRate, n, 0.3);
    const y = resampleInBlocks(x, inRate, [128]);
    assert.equal(y.length, 16000);
    const want = tone(440, 16000, 16000, 0.3);
    let err = 0;
    for (let i = 200; i < 15800; i++) err = Math.max(err, Math.abs(y[i] - want[i])); // away from the edges
    assert.ok(err < 2e-3, `max error ${err}`);
  });
}

test("the output does not depend on how the input is cut into blocks", () => {
  const x = Float32Array.from({ length: 30000 }, (_, i) => Math.sin(i * 0.01) * Math.cos(i * 0.137));
  const a = resampleInBlocks(x, 44100, [30000]);
  const b = resampleInBlocks(x, 44100, [128, 1, 777, 2048, 3]);
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-6, `sample ${i}`);
});

test("content above 8 kHz is filtered out, not folded into the speech band", () => {
  const y = resampleInBlocks(tone(12000, 48000, 48000), 48000, [512]);
  assert.ok(rms(y.subarray(200, 15800)) < 0.01, `a 12 kHz tone leaks at rms ${rms(y)}`);
  const kept = resampleInBlocks(tone(3000, 48000, 48000), 48000, [512]);
  assert.ok(Math.abs(rms(kept.subarray(200, 15800)) - Math.SQRT1_2) < 0.01);
});

test("a resampler at 16 kHz already passes the samples through", () => {
  const x = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i * 0.05));
  const y = resampleInBlocks(x, 16000, [100]);
  assert.equal(y.length, 1000);
  for (let i = 100; i < 900; i++) assert.ok(Math.abs(y[i] - x[i]) < 2e-3);
});

test("bad rates are refused", () => {
  assert.throws(() => new StreamResampler(0, 16000), /positive/);
});

test("the chunker numbers chunks by offset and stops at the limit", () => {
  const c = new TakeChunker(4, 10);
  const r1 = c.push(Float32Array.from([1, 2, 3, 4, 5, 6]));
  assert.deepEqual(r1.chunks.map((k) => [k.offset, Array.from(k.data)]), [[0, [1, 2, 3, 4]]]);
  assert.equal(r1.full, false);
  const r2 = c.push(Float32Array.from([7, 8, 9, 10, 11, 12]));
  assert.deepEqual(r2.chunks.map((k) => [k.offset, Array.from(k.data)]), [[4, [5, 6, 7, 8]]]);
  assert.equal(r2.full, true); // samples 11 and 12 are past the limit
  assert.deepEqual(c.flush().map((k) => [k.offset, Array.from(k.data)]), [[8, [9, 10]]]);
  assert.equal(c.total, 10);
  assert.deepEqual(c.push(Float32Array.from([1])).chunks, []);
});

test("chunks own their data (a later push does not change a chunk already sent)", () => {
  const c = new TakeChunker(2);
  const [first] = c.push(Float32Array.from([1, 2])).chunks;
  c.push(Float32Array.from([3, 4]));
  assert.deepEqual(Array.from(first.data), [1, 2]);
});

test("mixToMono averages channels; rms of a unit square wave is 1", () => {
  assert.deepEqual(Array.from(mixToMono([Float32Array.from([1, 0]), Float32Array.from([0, 1])])), [0.5, 0.5]);
  assert.equal(rms(Float32Array.from([1, -1, 1, -1])), 1);
});

test("microphone failures are said plainly", () => {
  assert.match(micErrorMessage({ name: "NotAllowedError", message: "Permission denied" }), /permission denied/i);
  assert.match(micErrorMessage({ name: "NotFoundError" }), /No microphone found/);
  assert.match(micErrorMessage({ name: "NotAllowedError" }, { secure: false, host: "10.0.0.5:8888" }),
    /secure page.*http:\/\/10\.0\.0\.5:8888/);
  assert.match(micErrorMessage({ name: "Weird", message: "boom" }), /Recording failed: Weird: boom/);
  assert.equal(clock(61.9), "1:01");
});
