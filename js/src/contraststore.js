// The contrast lane's data: contrasts (the selected token's word against a typed foil) asked for by key,
// cached, and the small pure helpers that turn one into what the lane draws (no DOM here; tested in js/test).
import { typedArray } from "./codecs.js";
import { pixelPick } from "./mapstore.js";
import { RequestStore } from "./requeststore.js";

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

export class ContrastStore extends RequestStore {
  /** send(content) posts a request to the kernel. The cache: key -> {token, target, foil, delta, ...,
   * map: Float32Array}. */
  constructor(send) { super(send, "C"); }

  get(token, foil) { return this.cache.get(contrastKey(token, foil)); }
  isPending(token, foil) { return this.pending.has(contrastKey(token, foil)); }

  /** Promise of the contrast; one request per key in flight. */
  request(token, foil) {
    return this._ask(contrastKey(token, foil), "contrast", { token, foil: bareWord(foil), selected: token });
  }

  /** Contrast replies (other views' results fill the cache too). */
  _result(msg, buffers) {
    if (msg.type !== "contrast") return null;
    const value = { ...msg, map: typedArray(msg.dtype ?? "float32", buffers[0]) };
    return [contrastKey(msg.token, msg.foil), value, value];
  }

  _message(msg) { return msg.message.replace(/^ValueError: /, ""); }
}

/**
 * Per pixel column of `axis`, the signed value of largest magnitude over the frames the column touches
 * (0 where the map has no frame). map covers global frames [startFrame, startFrame + map.length).
 */
export function pixelSigned(map, startFrame, frameS, axis, out = new Float32Array(Math.ceil(axis.width))) {
  return pixelPick(map, startFrame, frameS, axis, out, (v, m) => Math.abs(v) > Math.abs(m));
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
