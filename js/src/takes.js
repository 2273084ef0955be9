// The recorder bar above the View: record / stop, the takes of this widget's session, the take to
// compare with, and what went wrong, said plainly. Each take the kernel shows replaces the widget's
// `_meta`, and the View is built again for it (the bar stays). Messages (widget/record.py):
//   page -> kernel  {type: "take_start", take, sample_rate, source_rate, via}
//                   {type: "take_chunk", take, offset, n} + float32 16 kHz samples
//                   {type: "take_end", take, total, at_limit}   {type: "take_cancel", take}
//   kernel -> page  {type: "take_status", take, state: "explaining" | "ready" | "error", message}
import { h, onTrait, setTraits, listen } from "./dom.js";
import { Recorder, RecordError } from "./record.js";
import { clock, TAKE_RATE } from "./resample.js";

const takeId = () => Math.random().toString(36).slice(2, 10);

export class RecorderBar {
  constructor(model) {
    this.model = model;
    this.cleanups = [];
    this.recorder = null;
    this.ui = {
      record: h("button", { class: "lx-record", title: "Record a take from the microphone", text: "● record" }),
      time: h("span", { class: "lx-rec-time" }),
      level: h("span", { class: "lx-rec-level", "aria-hidden": "true" }, h("span", { class: "lx-rec-level-bar" })),
      takes: h("select", { class: "lx-takes", title: "The take shown" }),
      compare: h("select", { class: "lx-compare-take", title: "Compare the same word with another take" }),
      mode: h("select", { class: "lx-take-mode", title: "How to compare the takes" },
        h("option", { value: "side", text: "side by side" }), h("option", { value: "diff", text: "difference" })),
      message: h("span", { class: "lx-rec-msg", role: "alert" }),
    };
    const u = this.ui;
    this.el = h("div", { class: "leafx-recorder" }, u.record, u.time, u.level,
      h("label", { class: "lx-takes-label" }, "take ", u.takes),
      h("label", { class: "lx-compare-take-label" }, "compare with ", u.compare), u.mode, u.message);
    const on = (t, ev, fn) => this.cleanups.push(listen(t, ev, fn));
    on(u.record, "click", () => (this.recorder ? this.stop() : this.start()));
    on(u.takes, "change", () => setTraits(model, { take: +u.takes.value }));
    on(u.compare, "change", () => setTraits(model, { compare_take: u.compare.value === "" ? null : +u.compare.value }));
    on(u.mode, "change", () => setTraits(model, { compare_mode: u.mode.value }));
    for (const name of ["_record", "_takes", "take", "compare_take", "compare_mode"]) {
      this.cleanups.push(onTrait(model, name, () => this.sync()));
    }
    const onMsg = (msg) => { if (msg.type === "take_status") this._status(msg); };
    model.on("msg:custom", onMsg);
    this.cleanups.push(() => model.off("msg:custom", onMsg));
    this.sync();
  }

  get config() { return this.model.get("_record") ?? {}; }

  sync() {
    const u = this.ui, model = this.model, cfg = this.config, takes = model.get("_takes") ?? [];
    const current = model.get("take") ?? -1;
    u.record.disabled = !cfg.available;
    u.record.title = cfg.available ? `Record a take (at most ${cfg.max_seconds} s)` : cfg.reason ?? "";
    const label = (t) => `${t.index + 1}: ${t.label}` + (t.text ? ` · “${t.text.trim()}”` : "")
      + ` · ${t.duration_s.toFixed(1)} s`;
    u.takes.replaceChildren(...takes.map((t) => h("option", { value: t.index, text: label(t) })));
    u.takes.value = String(current);
    u.takes.disabled = takes.length < 2;
    u.compare.replaceChildren(h("option", { value: "", text: "none" }),
      ...takes.filter((t) => t.index !== current).map((t) => h("option", { value: t.index, text: label(t) })));
    const other = model.get("compare_take");
    u.compare.value = other == null || other === current ? "" : String(other);
    u.compare.disabled = takes.length < 2;
    u.mode.value = model.get("compare_mode") ?? "side";
    u.mode.hidden = other == null || other === current;
    this.el.dataset.takes = String(takes.length);
    if (!takes.length && !this.recorder && !u.message.textContent) {
      this._say(cfg.available ? "Press ● record and speak; press ■ stop when done." : "", "hint");
    }
  }

  _say(text, kind = "info") {
    const m = this.ui.message;
    m.textContent = text;
    m.className = `lx-rec-msg lx-rec-${kind}`;
    if (kind === "error") this.el.dataset.error = text;
    else delete this.el.dataset.error;
  }

  async start() {
    const model = this.model, cfg = this.config, take = takeId();
    this._say("");
    const rec = new Recorder({
      maxSeconds: cfg.max_seconds ?? 60,
      onChunk: ({ offset, data }) => model.send({ type: "take_chunk", take, offset, n: data.length }, undefined, [data.buffer]),
      onLevel: (level, seconds) => this._level(level, seconds),
      onLimit: () => this.stop({ atLimit: true }),
    });
    this.recorder = rec;
    this.take = take;
    this.ui.record.textContent = "■ stop";
    this.el.dataset.recording = "1";
    try {
      await rec.start();
      if (rec.stopped) return; // stopped while the permission prompt was open
      model.send({ type: "take_start", take, sample_rate: TAKE_RATE, source_rate: rec.rate, via: rec.via });
      this.el.dataset.via = rec.via;
      this._level(0, 0);
    } catch (err) {
      this._reset();
      this._say(err instanceof RecordError ? err.message : `Recording failed: ${err.message ?? err}`, "error");
    }
  }

  async stop({ atLimit = false } = {}) {
    const rec = this.recorder;
    if (!rec || this.stopping) return;
    this.stopping = true;
    const started = !!rec.chunker;
    const total = await rec.stop();
    this._reset();
    if (!started) return;
    const max = this.config.max_seconds ?? 60;
    this.model.send({ type: "take_end", take: this.take, total, at_limit: atLimit });
    this._say(atLimit
      ? `This take reached the ${max} s limit and was stopped there; its first ${max} s are explained `
        + `(lw.record(max_seconds=...) sets the limit).`
      : `explaining take (${(total / TAKE_RATE).toFixed(1)} s)…`, atLimit ? "limit" : "info");
  }

  _reset() {
    this.recorder = null;
    this.stopping = false;
    this.ui.record.textContent = "● record";
    delete this.el.dataset.recording;
    this.ui.level.firstChild.style.width = "0";
  }

  _level(level, seconds) {
    const u = this.ui;
    u.time.textContent = `${clock(seconds)} / ${clock(this.config.max_seconds ?? 60)}`;
    // dB scale: -60 dBFS empty, 0 dBFS full
    const db = 20 * Math.log10(Math.max(level, 1e-6));
    u.level.firstChild.style.width = `${Math.max(0, Math.min(100, ((db + 60) / 60) * 100)).toFixed(0)}%`;
    this.el.dataset.seconds = seconds.toFixed(2);
  }

  _status(msg) {
    if (msg.state === "error" && this.recorder && msg.take === this.take) { // refused while recorded
      this.recorder.stop().catch(() => {});
      this._reset();
    }
    if (msg.state === "error") this._say(msg.message, "error");
    else if (msg.state === "explaining") {
      if (!this.ui.message.className.includes("lx-rec-limit")) this._say(msg.message, "info");
    } else if (msg.state === "ready" && !this.ui.message.className.includes("lx-rec-limit")) this._say("");
  }

  destroy() {
    if (this.recorder) this.recorder.stop().catch(() => {});
    for (const off of this.cleanups.splice(0)) off();
    this.el.remove();
  }
}

/** Mounts the recorder bar and a View of the shown take into `el`; a new take builds a new View. */
export function mountWithTakes(model, el, makeView) {
  const bar = new RecorderBar(model);
  const host = h("div", { class: "lx-view-host" });
  el.append(bar.el, host);
  let view = null;
  const build = () => {
    view?.destroy();
    view = null;
    if (!model.get("_meta")?.empty) view = makeView(model, host);
  };
  build();
  const off = onTrait(model, "_meta", build);
  return () => {
    off();
    view?.destroy();
    bar.destroy();
  };
}
