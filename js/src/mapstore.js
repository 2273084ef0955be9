// Attribution maps on demand: request ids, a cache by key, busy state and progress (no DOM here).
import { typedArray } from "./codecs.js";
import { RequestStore } from "./requeststore.js";

export { CancelledError } from "./requeststore.js";

/** Cache key of one map, "token|method|p1=v1|p2=v2" over the parameters that `method` declares,
 * sorted by name: map_key in leafx_widgets/widget/protocol.py builds the same string (the format is
 * documented there). */
export function mapKey(token, method, params, methods) {
  const own = Object.keys(methods[method]?.params ?? {}).sort();
  return `${token}|${method}|` + own.map((k) => `${k}=${params[k]}`).join("|");
}

/**
 * Per pixel column of `axis`, the map value of the frames the column touches that `better(v, m)` prefers
 * over the best so far (from 0; 0 where the column touches no frame). map covers global frames
 * [startFrame, startFrame + map.length), `frameS` each.
 */
export function pixelPick(map, startFrame, frameS, axis, out, better) {
  out.fill(0);
  const n = map.length;
  for (let p = 0; p < out.length; p++) {
    const a = Math.floor(axis.xToTime(p) / frameS + 1e-9) - startFrame;
    const b = Math.ceil(axis.xToTime(p + 1) / frameS - 1e-9) - startFrame;
    let m = 0;
    for (let f = Math.max(a, 0); f < Math.min(b, n); f++) if (better(map[f], m)) m = map[f];
    out[p] = m;
  }
  return out;
}

/** Per pixel column of `axis`, the largest map value over the frames that the column touches. */
export function pixelMax(map, startFrame, frameS, axis, out = new Float32Array(Math.ceil(axis.width))) {
  return pixelPick(map, startFrame, frameS, axis, out, (v, m) => v > m);
}

export class MapStore extends RequestStore {
  /** send(content) posts a request to the kernel; methods is meta.methods by name. */
  constructor(send, methods) {
    super(send);
    this.methods = methods; // the cache: key -> {map, startFrame, ms}; pending entries carry t0
    this.listeners = new Set();
  }
  get busy() { return this.pending.size > 0; }
  pendingKeys() { return [...this.pending.keys()]; }
  /** Pending requests the kernel has started computing: {key, running: {note, since, expectedS}}. */
  running() { return [...this.pending.values()].filter((e) => e.running); }
  onChange(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); }
  _emit() { for (const fn of this.listeners) fn(this); }
  _changed() { this._emit(); }

  key(token, method, params) { return mapKey(token, method, params, this.methods); }
  get(token, method, params) { return this.cache.get(this.key(token, method, params)); }

  /** Promise of {map, startFrame, ms, cached}; one request per key in flight. `selected` is the
   * token the view shows (a prefetch of a neighbour passes the selected token): the kernel
   * drops requests made for a selection the user has left. */
  request(token, method, params, { selected = token } = {}) {
    const own = {};
    for (const k of Object.keys(this.methods[method]?.params ?? {})) own[k] = params[k];
    return this._ask(this.key(token, method, params), "map", { token, method, params: own, selected },
      { t0: performance.now() });
  }

  _hit(value) { return { ...value, cached: true }; }

  /** The pending entry a reply answers: any of its ids (merged requests), else its key. */
  _entry(msg) {
    return super._entry(msg) ?? this.pending.get(msg.key);
  }

  /** Handles a kernel reply (map, progress, error, cancelled); replies to other views' requests
   * still fill the cache. */
  receive(msg, buffers) {
    if (msg.type !== "progress") return super.receive(msg, buffers);
    const entry = this._entry(msg);
    if (entry) {
      entry.running = { note: msg.note, since: performance.now(), expectedS: msg.expected_s ?? null };
      this._emit();
    }
    return true;
  }

  _result(msg, buffers, entry) {
    if (msg.type !== "map") return null;
    const map = typedArray(msg.dtype ?? "float32", buffers[0]);
    const ms = entry ? performance.now() - entry.t0 : null;
    const value = { map, startFrame: msg.start_frame, ms };
    return [msg.key, value, { ...value, cached: false }];
  }
}
