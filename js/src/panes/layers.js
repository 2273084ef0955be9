// The layers pane: for the selected token, the logit lens as a strip of layers (each cell coloured by the
// emitted token's rank there, the top alternatives on hover) and, on the shared time axis, the patching
// lane (how much restoring each stretch of the clean encoder output brings the token back, 0 = corrupted,
// 1 = clean). Both come from the kernel ("lens" and "patching" messages, js/src/layerstore.js), only while
// the pane is open (the show_layers trait): patching runs ~30 decoder passes per token.
import { h, listen, onTrait, setTraits, fmtTime } from "../dom.js";
import { LayerStore, layersKey, lensCells, spanAt, spanBars, patchingSummary } from "../layerstore.js";
import { CanvasPane } from "./pane.js";

const LABEL = { lens: "the logit lens", patching: "activation patching" };

export class LayersPanel {
  constructor(view) {
    this.view = view;
    const m = view.meta;
    this.caps = m.layers ?? { lens: false, patching: false, corrupt: [] };
    this.corrupt = this.caps.default_corrupt ?? this.caps.corrupt?.[0] ?? "noise";
    this.store = new LayerStore((c) => view.model.send(c));
    this.shown = { lens: null, patching: null }; // {key, token, value} drawn now
    this.busy = new Map(); // kind -> {token, since} asked and not answered
    this.retried = new Set();
    this.errors = {};
    const opt = (v) => h("option", { value: v, text: v });
    this.ui = {
      toggle: h("button", { class: "lx-layers-toggle", "aria-expanded": "false",
        title: "Inside the model: the selected token's logit lens and activation patching" }),
      corrupt: h("select", { class: "lx-layers-corrupt", title: "What the model hears instead (patching)" },
        ...(this.caps.corrupt ?? []).map(opt)),
      status: h("span", { class: "lx-layers-status", role: "status" }),
      note: h("div", { class: "lx-layers-note" }),
      strip: h("div", { class: "lx-lens", role: "list", "aria-label": "logit lens" }),
    };
    const u = this.ui;
    u.corrupt.value = this.corrupt;
    u.corrupt.hidden = !this.caps.patching;
    this.body = h("div", { class: "lx-layers-body" }, u.note, u.strip);
    this.el = h("div", { class: "lx-layers" },
      h("div", { class: "lx-layers-head" }, u.toggle,
        h("label", { hidden: !this.caps.patching }, "corrupt ", u.corrupt), u.status),
      this.body);
    this.cleanups = [
      listen(u.toggle, "click", () => setTraits(view.model, { show_layers: !this.open })),
      listen(u.corrupt, "change", () => { this.corrupt = u.corrupt.value; this.update(); }),
      onTrait(view.model, "show_layers", () => { this.update(); view.drawAll(); }),
    ];
    this.update();
  }

  get open() { return !!this.view.model.get("show_layers"); }

  /** A kernel reply: true when it was the layers pane's. */
  receive(msg) { return this.store.receive(msg); }

  /** Asks for (or draws from the cache) what the open pane shows for the selected token. */
  update() {
    const v = this.view, u = this.ui, open = this.open, k = v.selected;
    u.toggle.textContent = `${open ? "▾" : "▸"} layers`;
    u.toggle.setAttribute("aria-expanded", String(open));
    this.body.hidden = !open;
    this.el.classList.toggle("lx-open", open);
    if (!open) {
      this.store.cancel(); // closed: nothing is computed for it
      return this._status();
    }
    const missing = ["lens", "patching"].filter((kind) => !this.caps[kind]);
    u.note.textContent = missing.length
      ? `${v.meta.model_name} does not support ${missing.map((x) => LABEL[x]).join(" or ")}.` : "";
    u.note.classList.remove("lx-layers-error");
    if (k == null || k >= v.meta.tokens.length) return this._status();
    for (const kind of ["lens", "patching"]) if (this.caps[kind]) this._want(kind, k);
    this._status();
  }

  _want(kind, k) {
    const corrupt = kind === "patching" ? this.corrupt : undefined;
    const key = layersKey(kind, k, corrupt);
    const s = this.shown[kind];
    if (s?.key === key && (s.value || this.busy.has(key))) return; // drawn, or asked for
    const hit = this.store.get(kind, k, corrupt);
    if (hit) return this._show(kind, key, k, hit);
    this._show(kind, key, k, null); // the old token's result would mislead: cleared while computing
    if (!this.busy.has(key)) this.busy.set(key, { kind, token: k, since: performance.now() });
    this.store.request(kind, k, corrupt).then((value) => {
      this.busy.delete(key);
      if (this._wanted(kind) === key) this._show(kind, key, k, value);
      this._status();
    }, (err) => {
      this.busy.delete(key);
      if (err.cancelled) {
        // dropped while the view had moved on and came back before the reply: ask once more
        if (this._wanted(kind) === key && err.reason === "deselected" && !this.retried.has(key)) {
          this.retried.add(key);
          this.update();
        }
      } else if (this._wanted(kind) === key) {
        this.ui.note.textContent = err.message;
        this.ui.note.classList.add("lx-layers-error");
      }
      this._status();
    });
  }

  /** The key the open pane wants for `kind` now, or null. */
  _wanted(kind) {
    const k = this.view.selected;
    if (!this.open || k == null) return null;
    return layersKey(kind, k, kind === "patching" ? this.corrupt : undefined);
  }

  _show(kind, key, token, value) {
    this.shown[kind] = { key, token, value };
    if (kind === "lens") this._drawLens();
    else {
      if (value) this.el.dataset.patchingKey = key;
      else delete this.el.dataset.patchingKey;
      this.view.paneList?.find((p) => p.name === "patching")?.redraw();
    }
  }

  _drawLens() {
    const s = this.shown.lens, strip = this.ui.strip;
    if (!s?.value) {
      strip.replaceChildren();
      delete this.el.dataset.lensToken;
      return;
    }
    const cells = lensCells(s.value);
    strip.replaceChildren(
      h("span", { class: "lx-lens-caption", text: `logit lens · ${JSON.stringify(s.value.text ?? this.view.meta.tokens[s.token]?.text ?? "")}` }),
      ...cells.map((c) => {
        const el = h("span", { class: "lx-lens-cell", role: "listitem", title: c.title, "data-rank": c.rank },
          h("span", { class: "lx-lens-layer", text: c.name }),
          h("span", { class: "lx-lens-top", text: c.top1 }),
          h("span", { class: "lx-lens-rank", text: c.rank === 0 ? "top" : `#${c.rank + 1}` }));
        el.style.setProperty("--lx-shade", c.shade.toFixed(3));
        return el;
      }));
    this.el.dataset.lensToken = String(s.token);
  }

  /** What the kernel computes for this pane now, with the seconds so far. */
  _status() {
    const wanted = [...this.busy.entries()].filter(([key, b]) => this._wanted(b.kind) === key);
    const u = this.ui;
    if (!wanted.length) {
      u.status.textContent = "";
      u.status.classList.remove("lx-busy");
      if (this.ticker) this.ticker = clearInterval(this.ticker);
      return;
    }
    const secs = (performance.now() - Math.min(...wanted.map(([, b]) => b.since))) / 1000;
    u.status.textContent = `computing ${wanted.map(([, b]) => (b.kind === "lens" ? "lens" : `patching (${this.corrupt})`)).join(" and ")} · ${secs.toFixed(0)} s`;
    u.status.classList.add("lx-busy");
    if (!this.ticker) this.ticker = setInterval(() => this._status(), 1000);
  }

  destroy() {
    clearInterval(this.ticker);
    for (const off of this.cleanups.splice(0)) off();
    this.el.remove();
  }
}

/** The patching lane on the time axis: one bar per restored stretch, its height the effect. */
export class PatchingPane extends CanvasPane {
  constructor(view) {
    super(view, { name: "patching", className: "lx-patching", height: 50 });
    this.offs = [listen(this.canvas, "mousemove", (e) => this._hover(e))];
  }

  _result() {
    const panel = this.view.layers;
    return panel?.open && panel.caps.patching ? panel.shown.patching : undefined;
  }

  redraw() { if (this.view._frame) this.draw(this.view._frame); }

  draw(f) {
    const s = this._result();
    this.show(s !== undefined);
    if (s === undefined) return;
    const ctx = this.context(), w = this.width, hgt = this.height, t = f.theme;
    const base = hgt - 8, one = 6; // y of effect 0 and of effect 1
    ctx.fillStyle = t.bg;
    ctx.fillRect(0, 0, w, hgt);
    ctx.fillStyle = t.grid;
    ctx.fillRect(0, base, w, 1);
    ctx.globalAlpha = 0.35;
    ctx.fillRect(0, one, w, 1);
    ctx.globalAlpha = 1;
    const p = s?.value;
    if (p) {
      for (const b of spanBars(p, f.axis)) {
        const y = base - b.effect * (base - one);
        ctx.fillStyle = b.effect >= 0 ? t.accent : t.grid;
        ctx.fillRect(b.x0, Math.min(y, base), Math.max(b.x1 - b.x0 - 1, 1), Math.max(Math.abs(base - y), 1));
      }
    }
    const tok = JSON.stringify(p?.text ?? this.view.meta.tokens[s?.token]?.text ?? "");
    const text = p ? `patching (${p.corrupt ?? this.view.layers.corrupt}) · ${tok} · restoring each stretch: 1 = clean`
      : "patching · computing…";
    ctx.font = "11px sans-serif";
    ctx.fillStyle = t.captionBg;
    ctx.fillRect(2, 2, ctx.measureText(text).width + 8, 15);
    ctx.fillStyle = t.fg;
    ctx.fillText(text, 6, 13);
    this.canvas.title = p ? patchingSummary(p) : "";
  }

  _hover(e) {
    const p = this._result()?.value, a = this.view.axis;
    if (!p || !a) return;
    const r = this.canvas.getBoundingClientRect();
    const i = spanAt(p, a.xToTime(e.clientX - r.left));
    const eff = i >= 0 ? p.effect[i] : null;
    this.canvas.title = i < 0 ? patchingSummary(p)
      : `${fmtTime(p.start_s[i])}–${fmtTime(p.end_s[i])} s restored: effect ${eff == null ? "–" : eff.toFixed(2)}`
        + (p.logprob?.[i] != null ? ` (log p ${p.logprob[i].toFixed(2)})` : "") + `\n${patchingSummary(p)}`;
  }

  destroy() {
    for (const off of this.offs.splice(0)) off();
    super.destroy();
  }
}
