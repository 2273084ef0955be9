// Attribution maps on demand: request ids, a cache by key, busy state and progress (no DOM here).
import { typedArray } from "./codecs.js";

/** Cache key of one map, "token|method|p1=v1|p2=v2" over the parameters that `method` declares,
 * sorted by name: map_key in leafx_widgets/widget/protocol.py builds the same string (the format is
 * documented there). */
export function mapKey(token, method, params, methods) {
  const own = Object.keys(methods[method]?.params ?? {}).sort();
  return `${token}|${method}|` + own.map((k) => `${k}=${params[k]}`).join("|");
}

/**
 * Per pixel column of `axis`, the largest map value over the frames that the column
 * touches. map covers global frames [startFrame, startFrame + map.length), `frameS` each.
 */
export function pixelMax(map, startFrame, frameS, axis, out = new Float32Array(Math.ceil(axis.width))) {
  out.fill(0);
  const n = map.length;
  for (let p = 0; p < out.length; p++) {
    const a = Math.floor(axis.xToTime(p) / frameS + 1e-9) - startFrame;
    const b = Math.ceil(axis.xToTime(p + 1) / frameS - 1e-9) - startFrame;
    let m = 0;
    for (let f = Math.max(a, 0); f < Math.min(b, n); f++) if (map[f] > m) m = map[f];
    out[p] = m;
  }
  return out;
}

/** A request the kernel dropped or stopped: the user moved on ("deselected"), pressed cancel ("user"),
 * or the widget closed ("closed"). Not an error to show. */
export class CancelledError extends Error {
  constructor(reason) {
    super(reason === "user" ? "cancelled" : `cancelled (${reason})`);
    this.name = "CancelledError";
    this.cancelled = true;
    this.reason = reason;
  }
}

export class MapStore {
  /** send(content) posts a request to the kernel; methods is meta.methods by name. */
  constructor(send, methods) {
    this.send = send;
    this.methods = methods;
    this.cache = new Map(); // key -> {map, startFrame, ms}
    this.pending = new Map(); // key -> {id, promise, resolve, reject, t0}
    this.byId = new Map();
    this.prefix = Math.random().toString(36).slice(2, 8);
    this.counter = 0;
    this.listeners = new Set();
  }
  get busy() { return this.pending.size > 0; }
  pendingKeys() { return [...this.pending.keys()]; }
  /** Pending requests the kernel has started computing: {key, running: {note, since, expectedS}}. */
  running() { return [...this.pending.values()].filter((e) => e.running); }
  onChange(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); }
  _emit() { for (const fn of this.listeners) fn(this); }

  key(token, method, params) { return mapKey(token, method, params, this.methods); }
  get(token, method, params) { return this.cache.get(this.key(token, method, params)); }

  /** Promise of {map, startFrame, ms, cached}; one request per key in flight. `selected` is the
   * token the view shows (a prefetch of a neighbour passes the selected token): the kernel
   * drops requests made for a selection the user has left. */
  request(token, method, params, { selected = token } = {}) {
    const key = this.key(token, method, params);
    const hit = this.cache.get(key);
    if (hit) return Promise.resolve({ ...hit, cached: true });
    const inflight = this.pending.get(key);
    if (inflight) return inflight.promise;
    const id = `${this.prefix}-${++this.counter}`;
    const own = {};
    for (const k of Object.keys(this.methods[method]?.params ?? {})) own[k] = params[k];
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    const entry = { id, key, promise, resolve, reject, t0: performance.now() };
    this.pending.set(key, entry);
    this.byId.set(id, entry);
    this.send({ type: "map", id, key, token, method, params: own, selected });
    this._emit();
    return promise;
  }

  /** Asks the kernel to stop this view's pending requests; each is rejected with a
   * CancelledError when the kernel confirms. Returns how many were pending. */
  cancel() {
    const ids = [...this.byId.keys()];
    if (ids.length) this.send({ type: "cancel", ids });
    return ids.length;
  }

  /** The pending entry a reply answers: any of its ids (merged requests), else its key. */
  _entry(msg) {
    for (const id of [msg.id, ...(msg.ids ?? [])]) {
      const e = this.byId.get(id);
      if (e) return e;
    }
    return this.pending.get(msg.key);
  }

  /** Handles a kernel reply; replies to other views' requests still fill the cache. */
  receive(msg, buffers) {
    const entry = this._entry(msg);
    if (msg.type === "progress") {
      if (entry) {
        entry.running = { note: msg.note, since: performance.now(), expectedS: msg.expected_s ?? null };
        this._emit();
      }
      return;
    }
    if (msg.type === "map") {
      const map = typedArray(msg.dtype ?? "float32", buffers[0]);
      const ms = entry ? performance.now() - entry.t0 : null;
      const value = { map, startFrame: msg.start_frame, ms };
      this.cache.set(msg.key, value);
      if (entry) entry.resolve({ ...value, cached: false });
    } else if (msg.type === "error" && entry) {
      entry.reject(new Error(msg.message));
    } else if (msg.type === "cancelled" && entry) {
      entry.reject(new CancelledError(msg.reason));
    } else {
      return;
    }
    if (entry) {
      this.pending.delete(entry.key);
      this.byId.delete(entry.id);
    }
    this._emit();
  }
}
