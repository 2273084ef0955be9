// The contrast lane's data: contrasts (the selected token's word against a typed foil) asked for by key,
// cached, and the small pure helpers that turn one into what the lane draws (no DOM here; tested in js/test).
import { typedArray } from "./codecs.js";

// Python's string.punctuation, curly quotes and space: what audit/contrast.py strips around a word
const EDGE = "[!\"#$%&'()*+,\\-./:;<=>?@[\\\\\\]^_`{|}~\u201c\u201d\u2018\u2019 ]+";
const EDGES = new RegExp(`^${EDGE}|${EDGE}$`, "g");

/** The word without surrounding spaces and punctuation ("clubs." -> "clubs"), as the kernel compares it. */
export function bareWord(text) {
  return String(text ?? "").trim().replace(EDGES, "");
}

/** "{token}|contrast|{foil}": contrast_key in leafx_widgets/widget/contrast.py. */
export function contrastKey(token, foil) {
  return `${token}|contrast|${bareWord(foil)}`;
}

/** A request the kernel dropped or stopped (the user moved on, cancelled, or the widget closed). */
export class ContrastCancelled extends Error {
  constructor(reason) {
    super(`cancelled (${reason})`);
    this.cancelled = true;
    this.reason = reason;
  }
}

export class ContrastStore {
  /** send(content) posts a request to the kernel. */
  constructor(send) {
    this.send = send;
    this.cache = new Map(); // key -> {token, target, foil, delta, ..., map: Float32Array}
    this.pending = new Map(); // key -> {id, key, promise, resolve, reject}
    this.byId = new Map();
    this.prefix = `C${Math.random().toString(36).slice(2, 8)}`;
    this.counter = 0;
  }

  get(token, foil) { return this.cache.get(contrastKey(token, foil)); }
  isPending(token, foil) { return this.pending.has(contrastKey(token, foil)); }

  /** Promise of the contrast; one request per key in flight. */
  request(token, foil) {
    const key = contrastKey(token, foil);
    const hit = this.cache.get(key);
    if (hit) return Promise.resolve(hit);
    const inflight = this.pending.get(key);
    if (inflight) return inflight.promise;
    const id = `${this.prefix}-${++this.counter}`;
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    const entry = { id, key, promise, resolve, reject };
    this.pending.set(key, entry);
    this.byId.set(id, entry);
    this.send({ type: "contrast", id, key, token, foil: bareWord(foil), selected: token });
    return promise;
  }

  _entry(msg) {
    for (const id of [msg.id, ...(msg.ids ?? [])]) {
      const e = this.byId.get(id);
      if (e) return e;
    }
    return null;
  }

  /** Handles a kernel reply; true when it was a contrast reply (other views' results fill the cache). */
  receive(msg, buffers) {
    const ours = msg.type === "contrast";
    const entry = this._entry(msg);
    if (!ours && !(entry && (msg.type === "error" || msg.type === "cancelled"))) return false;
    if (ours) {
      const value = { ...msg, map: typedArray(msg.dtype ?? "float32", buffers[0]) };
      this.cache.set(contrastKey(msg.token, msg.foil), value);
      entry?.resolve(value);
    } else if (msg.type === "error") {
      entry.reject(new Error(msg.message.replace(/^ValueError: /, "")));
    } else {
      entry.reject(new ContrastCancelled(msg.reason));
    }
    if (entry) {
      this.pending.delete(entry.key);
      this.byId.delete(entry.id);
    }
    return true;
  }
}

/**
 * Per pixel column of `axis`, the signed value of largest magnitude over the frames the column touches
 * (0 where the map has no frame). map covers global frames [startFrame, startFrame + map.length).
 */
export function pixelSigned(map, startFrame, frameS, axis, out = new Float32Array(Math.ceil(axis.width))) {
  out.fill(0);
  const n = map.length;
  for (let p = 0; p < out.length; p++) {
    const a = Math.floor(axis.xToTime(p) / frameS + 1e-9) - startFrame;
    const b = Math.ceil(axis.xToTime(p + 1) / frameS - 1e-9) - startFrame;
    let m = 0;
    for (let f = Math.max(a, 0); f < Math.min(b, n); f++) if (Math.abs(map[f]) > Math.abs(m)) m = map[f];
    out[p] = m;
  }
  return out;
}

/** The largest magnitude in the map (what ±1 means in the lane, whatever part of it is in view). */
export function signedScale(map) {
  let max = 0;
  for (let i = 0; i < map.length; i++) if (Math.abs(map[i]) > max) max = Math.abs(map[i]);
  return max;
}

const num = (x, d = 2) => (x == null || !Number.isFinite(x) ? "–" : (x > 0 ? "+" : "") + x.toFixed(d));

/** The legend's parts: what each colour favours, and delta = log p(word) - log p(foil) on the clip. */
export function contrastLegend(c) {
  return {
    pos: `favours ${JSON.stringify(c.target)}`,
    neg: `favours ${JSON.stringify(c.foil)}`,
    delta: `Δ log p ${num(c.delta)}`,
    title: `log p(${JSON.stringify(c.target)}) − log p(${JSON.stringify(c.foil)}) = ${num(c.delta)} on this audio, `
      + `${num(c.delta_silence)} on silence; the lane adds up to ${num(c.total)}. `
      + `Most in favour of ${JSON.stringify(c.target)} at ${c.peak_s == null ? "–" : c.peak_s.toFixed(2)} s.`,
  };
}

/** A line for the time under the pointer: the frame's value and whom it favours. */
export function contrastAt(c, t, frameS) {
  const i = Math.floor(t / frameS + 1e-9) - c.start_frame;
  if (!(i >= 0 && i < c.map.length)) return null;
  const v = c.map[i];
  return { value: v, favours: v > 0 ? c.target : v < 0 ? c.foil : null };
}
