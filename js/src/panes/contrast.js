// The contrast lane: why the model wrote the selected token's word and not a foil the user types. A foil
// input in the toolbar (Enter computes; an empty one hides the lane) and, on the shared time axis, a signed
// lane: frames whose sound favours the written word above the line, those favouring the foil below, with a
// legend and delta = log p(word) - log p(foil). The kernel computes it ("contrast" messages,
// js/src/contraststore.js; 16 Integrated-Gradients steps, seconds on a CPU). The foil shown per token is the
// synced trait contrast_foils, so other views, Python and the HTML export show the same lane.
import { h, listen, onTrait, setTraits, fmtTime } from "../dom.js";
import { divergingColor } from "../colors.js";
import { ContrastStore, bareWord, contrastKey, contrastLegend, contrastAt, pixelSigned, signedScale } from "../contraststore.js";
import { CanvasPane } from "./pane.js";

export class ContrastPanel {
  constructor(view) {
    this.view = view;
    this.supported = !!view.meta.contrast;
    this.store = new ContrastStore((c) => view.model.send(c));
    this.shown = null; // {key, token, foil, value, error} for the selected token, or null
    this.retried = new Set();
    const swatch = (v) => h("i", { class: "lx-contrast-swatch", style: `background: ${divergingColor(v, 1)}` });
    this.ui = {
      foil: h("input", { class: "lx-contrast-foil", type: "text", size: "9", spellcheck: "false",
        placeholder: "foil…", disabled: !this.supported, "aria-label": "contrast foil",
        title: this.supported ? "Type another word and press Enter: which frames favour the written word, which the foil"
          : `${view.meta.model_name} does not support contrastive explanations` }),
      status: h("span", { class: "lx-contrast-status", role: "status" }),
      pos: h("span", { class: "lx-contrast-pos" }),
      neg: h("span", { class: "lx-contrast-neg" }),
      delta: h("span", { class: "lx-contrast-delta" }),
    };
    const u = this.ui;
    this.legend = h("span", { class: "lx-contrast-legend", hidden: true }, swatch(1), u.pos, swatch(-1), u.neg, u.delta);
    this.el = h("span", { class: "lx-group lx-contrast" }, h("label", {}, "contrast ", u.foil), this.legend, u.status);
    this.cleanups = [
      listen(u.foil, "keydown", (e) => {
        if (e.key !== "Enter") return;
        e.preventDefault();
        this.setFoil(u.foil.value);
      }),
      onTrait(view.model, "contrast_foils", () => this.update()),
    ];
  }

  /** Per token index (a string), the foil its lane shows. */
  foils() { return this.view.model.get("contrast_foils") ?? {}; }

  /** The user typed `text` for the selected token: shown (computed first) or, when empty, hidden. */
  setFoil(text) {
    const k = this.view.selected;
    if (k == null) return;
    const foils = { ...this.foils() }, foil = String(text).trim();
    if (foil) foils[k] = foil;
    else delete foils[k];
    this.retried.delete(contrastKey(k, foil));
    if (this.shown?.error) this.shown = null; // asked again: ask the kernel again
    setTraits(this.view.model, { contrast_foils: foils });
    this.update();
  }

  /** A kernel reply: true when it was the contrast lane's. */
  receive(msg, buffers) { return this.store.receive(msg, buffers); }

  /** Draws (or asks for) the selected token's contrast against its foil. */
  update() {
    const v = this.view, k = v.selected, u = this.ui;
    const tok = k == null ? null : v.meta.tokens[k];
    const word = tok ? bareWord(v.meta.words[tok.word]?.text ?? tok.text) : "";
    u.foil.placeholder = word ? `foil for ${JSON.stringify(word)}` : "foil…";
    const foil = tok ? this.foils()[k] : undefined;
    if (document.activeElement !== u.foil || this._token !== k) u.foil.value = foil ?? "";
    this._token = k;
    if (!this.supported || !tok || !foil) return this._show(null);
    const key = contrastKey(k, foil);
    if (this.shown?.key === key) return this._show(this.shown); // drawn, failed, or asked for
    const hit = this.store.get(k, foil);
    if (hit) return this._show({ key, token: k, foil, value: hit });
    this._show({ key, token: k, foil, value: null, since: performance.now() });
    this.store.request(k, foil).then((value) => {
      if (this.shown?.key === key) this._show({ key, token: k, foil, value });
    }, (err) => {
      if (this.shown?.key !== key) return;
      if (!err.cancelled) return this._show({ key, token: k, foil, value: null, error: err.message });
      // dropped while the view had moved on and came back before the reply: ask once more
      this.shown = null;
      if (err.reason === "deselected" && !this.retried.has(key)) {
        this.retried.add(key);
        this.update();
      } else this._show(null);
    });
  }

  _show(s) {
    this.shown = s;
    const u = this.ui, c = s?.value, root = this.view.root;
    this.legend.hidden = !c;
    if (c) {
      const l = contrastLegend(c);
      u.pos.textContent = l.pos;
      u.neg.textContent = l.neg;
      u.delta.textContent = l.delta;
      this.legend.title = l.title;
    }
    u.status.textContent = s?.error ?? (s && !c ? "computing…" : "");
    u.status.classList.toggle("lx-contrast-error", !!s?.error);
    u.status.classList.toggle("lx-busy", !!s && !c && !s.error);
    if (root) {
      if (c) root.dataset.contrastKey = s.key;
      else delete root.dataset.contrastKey;
    }
    this.view.paneList?.find((p) => p.name === "contrast")?.redraw();
  }

  destroy() {
    for (const off of this.cleanups.splice(0)) off();
    this.el.remove();
  }
}

/** The signed lane on the time axis: up (orange) favours the written word, down (blue) the foil. */
export class ContrastPane extends CanvasPane {
  constructor(view) {
    super(view, { name: "contrast", className: "lx-contrast-lane", height: 44 });
    this.offs = [listen(this.canvas, "mousemove", (e) => this._hover(e))];
  }

  _shown() {
    const s = this.view.contrast?.shown;
    return s && !s.error ? s : null;
  }

  redraw() { if (this.view._frame) this.draw(this.view._frame); }

  draw(f) {
    const s = this._shown();
    this.show(!!s);
    if (!s) return;
    const ctx = this.context(), w = this.width, hgt = this.height, t = f.theme, mid = hgt / 2;
    ctx.fillStyle = t.bg;
    ctx.fillRect(0, 0, w, hgt);
    ctx.fillStyle = t.grid;
    ctx.fillRect(0, mid, w, 1);
    const c = s.value;
    const scale = c ? signedScale(c.map) : 0;
    if (scale > 0) {
      const cols = pixelSigned(c.map, c.start_frame, f.frameS, f.axis);
      for (let x = 0; x < cols.length; x++) {
        const r = cols[x] / scale, d = Math.sqrt(Math.abs(r)); // a signed √ scale, like the difference lane
        if (d < 0.05) continue;
        ctx.fillStyle = divergingColor(r > 0 ? 1 : -1, 0.35 + 0.6 * d);
        const bh = d * (mid - 2);
        ctx.fillRect(x, r > 0 ? mid - bh : mid + 1, 1, Math.max(bh, 0.5));
      }
    }
    const text = c ? `contrast · ${JSON.stringify(c.target)} vs ${JSON.stringify(c.foil)} · √ scale`
      : `contrast · ${JSON.stringify(bareWord(s.foil))} · computing…`;
    ctx.font = "11px sans-serif";
    ctx.fillStyle = t.captionBg;
    ctx.fillRect(2, 2, ctx.measureText(text).width + 8, 15);
    ctx.fillStyle = t.fg;
    ctx.fillText(text, 6, 13);
  }

  _hover(e) {
    const c = this._shown()?.value, a = this.view.axis;
    if (!c || !a) return;
    const r = this.canvas.getBoundingClientRect(), time = a.xToTime(e.clientX - r.left);
    const at = contrastAt(c, time, this.view.meta.frame_s);
    this.canvas.title = (at ? `${fmtTime(time)} s: ${at.value >= 0 ? "+" : ""}${at.value.toFixed(3)}`
      + (at.favours ? ` (favours ${JSON.stringify(at.favours)})` : "") + "\n" : "") + contrastLegend(c).title;
  }

  destroy() {
    for (const off of this.offs.splice(0)) off();
    super.destroy();
  }
}
