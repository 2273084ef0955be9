// The layers pane's data: logit lens and patching results asked for by key, cached, and the small
// pure helpers that turn them into what the pane draws (no DOM here; tested in js/test).
import { RequestStore } from "./requeststore.js";

/** "{token}|lens" or "{token}|patching|{corrupt}": layers_key in leafx_widgets/widget/layers.py. */
export function layersKey(kind, token, corrupt) {
  return kind === "lens" ? `${token}|lens` : `${token}|patching|${corrupt}`;
}

export class LayerStore extends RequestStore {
  /** send(content) posts a request to the kernel. The cache: key -> result JSON. */
  constructor(send) { super(send, "L"); }

  get(kind, token, corrupt) { return this.cache.get(layersKey(kind, token, corrupt)); }
  pendingOf(kind, token, corrupt) { return this.pending.get(layersKey(kind, token, corrupt)); }

  /** Promise of the result JSON; one request per key in flight. */
  request(kind, token, corrupt) {
    const fields = kind === "patching" ? { token, selected: token, corrupt } : { token, selected: token };
    return this._ask(layersKey(kind, token, corrupt), kind, fields, { kind, token, since: Date.now() });
  }

  /** Lens and patching replies (results of other views fill the cache too). */
  _result(msg) {
    if (msg.type !== "lens" && msg.type !== "patching") return null;
    const value = msg[msg.type];
    return [layersKey(msg.type, msg.token, msg.corrupt), value, value];
  }
}

/** 1 for the top rank, falling with log2 of the rank: how strongly a lens cell is coloured. */
export function rankShade(rank) {
  if (rank == null || !(rank >= 0)) return 0;
  return 1 / (1 + Math.log2(1 + rank));
}

const quote = (t) => JSON.stringify(t);
const num = (x, d = 2) => (x == null || !Number.isFinite(x) ? "–" : x.toFixed(d));

/** One cell per layer: its name, what it would emit (top alternative), the emitted token's rank and
 * log-prob, the shade, and the hover text listing the top alternatives. */
export function lensCells(lens) {
  return lens.layers.map((name, l) => {
    const rank = lens.rank[l], top = lens.top[l] ?? [];
    const alts = top.map(([t, p]) => `${quote(t)} ${num(p, 3)}`).join(", ");
    return {
      name, rank, logprob: lens.logprob[l], shade: rankShade(rank),
      top1: top.length ? top[0][0] : "",
      title: `${name}: ${quote(lens.text ?? "")} ranks #${rank + 1} (log p ${num(lens.logprob[l])})\ntop: ${alts}`,
    };
  });
}

/** The span index whose [start_s, end_s) holds time t, or -1. */
export function spanAt(p, t) {
  const s = p.start_s, e = p.end_s;
  if (!s) return -1;
  for (let i = 0; i < s.length; i++) if (t >= s[i] && t < e[i]) return i;
  return -1;
}

/** Per span, the pixel range [x0, x1) it covers on `axis` and its effect clamped to [lo, hi]
 * (null effects, e.g. a corruption that does not change the token, are left out). */
export function spanBars(p, axis, { lo = -1, hi = 1.5 } = {}) {
  const out = [];
  if (!p.start_s) return out;
  for (let i = 0; i < p.start_s.length; i++) {
    const e = p.effect[i];
    if (e == null || !Number.isFinite(e)) continue;
    const x0 = axis.timeToX(p.start_s[i]), x1 = axis.timeToX(p.end_s[i]);
    if (x1 < 0 || x0 > axis.width) continue;
    out.push({ i, x0, x1, effect: Math.min(Math.max(e, lo), hi) });
  }
  return out;
}

/** A line about a patching result: the clean and corrupted log-probs, and whether they differ enough
 * for the effects to mean anything. */
export function patchingSummary(p) {
  const gap = (p.clean_logprob ?? NaN) - (p.corrupt_logprob ?? NaN);
  const base = `clean log p ${num(p.clean_logprob)}, corrupted ${num(p.corrupt_logprob)}`;
  if (!Number.isFinite(gap) || Math.abs(gap) < 0.05) return `${base}: the corruption barely changes this token, so restoring has no effect to show`;
  return base;
}
