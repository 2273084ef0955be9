// Kernel-free mode for save_html: a local model that answers the View's requests from
// data embedded in the page, so the same View code draws the exported file.
import { base64ToBytes } from "./codecs.js";
import { View } from "./view.js";
import { contrastKey } from "./contraststore.js";

export class LocalModel {
  constructor(data) {
    this.data = data;
    this.state = { ...data.state, _meta: data.meta };
    this.handlers = new Map();
  }
  get(name) { return this.state[name]; }
  set(name, value) {
    const old = this.state[name];
    this.state[name] = value;
    if (old !== value) this._fire(`change:${name}`);
  }
  save_changes() {}
  on(event, fn) {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event).add(fn);
  }
  off(event, fn) { this.handlers.get(event)?.delete(fn); }
  _fire(event, ...args) { for (const fn of [...(this.handlers.get(event) ?? [])]) fn(...args); }
  send(msg) { setTimeout(() => this._answer(msg), 0); }

  _reply(content, bytes) {
    this._fire("msg:custom", content, bytes ? [new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)] : []);
  }

  _answer(msg) {
    const d = this.data;
    if (msg.type === "init") {
      const { b64, ...mel } = d.mel;
      this._reply({ type: "mel", offset_cols: 0, ...mel }, base64ToBytes(b64));
      const { b64: pb64, ...peaks } = d.peaks;
      this._reply({ type: "peaks", ...peaks }, base64ToBytes(pb64));
      this._reply({ type: "audio", offset: 0, n: d.audio.total, total: d.audio.total }, base64ToBytes(d.audio.b64));
      if (d.audit) this._reply({ type: "audit", state: "ready", rows: d.audit });
    } else if (msg.type === "map") {
      const hit = d.maps[msg.key];
      if (hit) this._reply({ type: "map", id: msg.id, key: msg.key, start_frame: hit.start_frame, dtype: "float32" }, base64ToBytes(hit.b64));
      else this._reply({ type: "error", id: msg.id, key: msg.key,
        message: `This export holds no map for ${msg.method} with these settings (exported: ${d.methods.join(", ")}). Open the notebook to compute it.` });
    } else if (msg.type === "lens" || msg.type === "patching") {
      const hit = d.layers?.[msg.key]; // exported under the same layersKey
      if (hit) this._reply({ type: msg.type, id: msg.id, key: msg.key, token: msg.token, corrupt: msg.corrupt, [msg.type]: hit });
      else this._reply({ type: "error", id: msg.id, key: msg.key, message: `This export holds no ${msg.type === "lens"
        ? "logit lens" : `patching (${msg.corrupt})`} for token ${msg.token}. Open the notebook to compute it.` });
    } else if (msg.type === "contrast") {
      const hit = d.contrasts?.[contrastKey(msg.token, msg.foil)]; // exported under the same contrastKey
      if (hit) {
        const { b64, ...c } = hit;
        this._reply({ type: "contrast", id: msg.id, key: msg.key, ...c }, base64ToBytes(b64));
      } else this._reply({ type: "error", id: msg.id, key: msg.key,
        message: `This export holds no contrast of token ${msg.token} with ${JSON.stringify(msg.foil)}. Open the notebook to compute it.` });
    } else if (msg.type === "overview" && d.overview) {
      const { b64, ...ov } = d.overview;
      this._reply({ type: "overview", row0: 0, ...ov }, base64ToBytes(b64));
    }
  }
}

/** Mounts a kernel-free view of embedded data into `el`. */
export function mount(el, data) {
  const view = new View(new LocalModel(data), el, { standalone: true });
  return view;
}
