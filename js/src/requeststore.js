// What the map, layers and contrast stores share: one request per key in flight, results cached by key,
// replies matched to their request by any of their ids (merged requests), and cancellation (no DOM here).

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

export class RequestStore {
  /** send(content) posts a request to the kernel; request ids start with `tag` and a random part. */
  constructor(send, tag = "") {
    this.send = send;
    this.cache = new Map(); // key -> value
    this.pending = new Map(); // key -> {id, key, promise, resolve, reject, ...}
    this.byId = new Map();
    this.prefix = `${tag}${Math.random().toString(36).slice(2, 8)}`;
    this.counter = 0;
  }

  /** Promise of the value cached under `key`, of the request in flight for it, or of a new request
   * {type, id, key, ...fields} (`extra` goes into its pending entry). */
  _ask(key, type, fields, extra = {}) {
    const hit = this.cache.get(key);
    if (hit) return Promise.resolve(this._hit(hit));
    const inflight = this.pending.get(key);
    if (inflight) return inflight.promise;
    const id = `${this.prefix}-${++this.counter}`;
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    const entry = { id, key, promise, resolve, reject, ...extra };
    this.pending.set(key, entry);
    this.byId.set(id, entry);
    this.send({ type, id, key, ...fields });
    this._changed();
    return promise;
  }

  /** What a cached value resolves to. */
  _hit(value) { return value; }

  /** Called after a request is sent or a reply handled (the map store tells its listeners). */
  _changed() {}

  /** Asks the kernel to stop every pending request; each is rejected with a CancelledError when the
   * kernel confirms. Returns how many were pending. */
  cancel() {
    const ids = [...this.byId.keys()];
    if (ids.length) this.send({ type: "cancel", ids });
    return ids.length;
  }

  /** The pending entry a reply answers: any of its ids (merged requests), or null. */
  _entry(msg) {
    for (const id of [msg.id, ...(msg.ids ?? [])]) {
      const e = this.byId.get(id);
      if (e) return e;
    }
    return null;
  }

  /** Handles a kernel reply: a result (`_result(msg, buffers, entry)` gives [key, value, resolved], or
   * null when the reply is not this store's), or an error or cancellation of one of its requests.
   * False when the reply is none of these; results of other views' requests still fill the cache. */
  receive(msg, buffers) {
    const entry = this._entry(msg);
    const result = this._result(msg, buffers, entry);
    if (!result && !(entry && (msg.type === "error" || msg.type === "cancelled"))) return false;
    if (result) {
      const [key, value, resolved] = result;
      this.cache.set(key, value);
      entry?.resolve(resolved);
    } else if (msg.type === "error") {
      entry.reject(new Error(this._message(msg)));
    } else {
      entry.reject(new CancelledError(msg.reason));
    }
    if (entry) {
      this.pending.delete(entry.key);
      this.byId.delete(entry.id);
    }
    this._changed();
    return true;
  }

  /** The text of an error reply as the request's rejection says it. */
  _message(msg) { return msg.message; }
}
