// The widget view: builds the DOM, receives data from the kernel (or the standalone
// stub), and wires panes, player, transcript and map requests together. The panes (panes/)
// share one interface and draw from one frame that drawAll() builds per redraw.
import { typedArray, pcm16ToFloat32, ChunkAssembler } from "./codecs.js";
import { TimeAxis } from "./timeaxis.js";
import { massRegions, wordSpans } from "./regions.js";
import { binOfTime, tokensAt, tokenUnder } from "./lookup.js";
import { confidenceAlpha } from "./colors.js";
import { MapStore, pixelMax } from "./mapstore.js";
import { Player } from "./player.js";
import { Waveform, Spectrogram, Overview } from "./draw.js";
import { PANES } from "./panes/index.js";
import { LayersPanel } from "./panes/layers.js";
import { ContrastPanel } from "./panes/contrast.js";
import { h, onTrait, setTraits, debounce, listen, fmtTime } from "./dom.js";
import { appendFrom, decodingStatus } from "./stream.js";
import { AuditPanel } from "./audit.js";

const THEME_VARS = {
  bg: "--lx-bg", fg: "--lx-fg", wave: "--lx-wave", attr: "--lx-attr", attrLine: "--lx-attr-line",
  accent: "--lx-accent", playing: "--lx-playing", wordA: "--lx-word-a", wordB: "--lx-word-b",
  wordSelected: "--lx-word-selected", region: "--lx-region", grid: "--lx-grid",
  captionBg: "--lx-caption-bg", attr2: "--lx-attr2",
};

export class View {
  constructor(model, el, { standalone = false } = {}) {
    this.t0 = performance.now();
    this.model = model;
    this.el = el;
    this.standalone = standalone;
    // a copy: a recording still being decoded (meta.complete false) grows its tokens, words and segments
    const meta = model.get("_meta");
    this.meta = { ...meta, tokens: [...meta.tokens], words: [...meta.words], segments: [...(meta.segments ?? [])] };
    this.decoding = { decodedS: meta.decoded_s ?? meta.duration_s, complete: meta.complete !== false, stopped: false };
    this.methods = Object.fromEntries(this.meta.methods.map((m) => [m.name, m]));
    this.metrics = { switches: [], maps: [] };
    this.cleanups = [];
    this.current = null; // {key, primary, compare} currently drawn
    this.playingToken = -1;
    this.store = new MapStore((c) => model.send(c), this.methods);
    this._indexWords();

    this._buildDom();
    this.cleanups.push(this.store.onChange(() => this._status()));
    const onMsg = (msg, buffers) => this._onMessage(msg, buffers);
    model.on("msg:custom", onMsg);
    this.cleanups.push(() => model.off("msg:custom", onMsg));
    for (const name of ["method", "compare_method", "compare_mode", "tau", "depth"]) {
      this.cleanups.push(onTrait(model, name, () => { this._syncControls(); this.update(); }));
    }
    this.cleanups.push(onTrait(model, "selected_token", (k) => {
      if (k !== this.selected) this.select(k, { fromModel: true });
    }));
    this.cleanups.push(onTrait(model, "current_time", (t) => {
      if (this.player && Math.abs(t - this.player.time) > 0.05) this.player.seek(t);
    }));
    this.writeTime = debounce((t) => setTraits(model, { current_time: t }), 250);
    this.writeSelection = debounce(() => {
      if (model.get("selected_token") !== this.selected) setTraits(model, { selected_token: this.selected });
    }, 120);
    this.cleanups.push(() => { this.writeTime.cancel(); this.writeSelection.cancel(); });
    this._status("loading audio…");
    this._mark("built");
    this.stream = Math.random().toString(36).slice(2, 10);
    model.send({ type: "init", stream: this.stream });
  }

  // ---- DOM ---------------------------------------------------------------------------
  _buildDom() {
    const m = this.meta;
    const opt = (value, label, disabled = false) => h("option", { value, text: label, disabled });
    // a method whose optional packages are missing is listed, greyed out, with the install command as its title
    const methodOpt = (x) => x.available === false
      ? Object.assign(opt(x.name, `${x.label} (not installed)`, true), { title: x.needs ?? "" })
      : opt(x.name, x.cost === "slow" ? `${x.label} (slow)` : x.label);
    const methodOpts = () => m.methods.map(methodOpt);
    this.ui = {
      play: h("button", { class: "lx-play", title: "Play / pause (space)", text: "▶ play" }),
      playWord: h("button", { class: "lx-play-word", title: "Play the selected token's word", text: "▶ word" }),
      playRegion: h("button", { class: "lx-play-region", title: "Play the frames holding half of the selected token's attribution", text: "▶ evidence" }),
      time: h("span", { class: "lx-time" }),
      variant: h("select", { class: "lx-variant", title: "Attribution method" }, ...methodOpts()),
      // the base / +grad / +causal toggle over the ladder that works for this model (meta.ladder)
      ladder: h("span", { class: "lx-ladder", role: "group", "aria-label": "LEAF-X variant" },
        ...(m.ladder?.length === 3 ? m.ladder : []).map((name, i) => h("button", {
          class: "lx-rung", "data-method": name, text: ["base", "+grad", "+causal"][i],
          title: m.methods.find((x) => x.name === name)?.label ?? name }))),
      compare: h("select", { class: "lx-compare", title: "Compare with" }, opt("", "none"), ...methodOpts()),
      mode: h("select", { class: "lx-compare-mode" }, opt("side", "side by side"), opt("diff", "difference")),
      tau: h("input", { class: "lx-tau", type: "number", step: "0.1", min: "0.05", title: "Entropy temperature τ" }),
      depth: h("select", { class: "lx-depth", title: "Rollout depth" }, ...m.depths.map((d) => opt(d, d.replace("_", " ")))),
      zoomIn: h("button", { class: "lx-zoom-in", title: "Zoom in (ctrl + wheel)", text: "+" }),
      zoomOut: h("button", { class: "lx-zoom-out", title: "Zoom out", text: "−" }),
      fit: h("button", { class: "lx-fit", title: "Show all", text: "fit" }),
      png: h("button", { class: "lx-png", title: "Save the view as PNG", text: "PNG" }),
      status: h("span", { class: "lx-status", role: "status" }),
      cancel: h("button", { class: "lx-cancel", title: "Stop computing the map(s) this view waits for", text: "cancel",
        hidden: true }),
      errorText: h("span", { class: "lx-error-text" }),
      errorClose: h("button", { class: "lx-error-close", title: "Dismiss", text: "×" }),
      playhead: h("div", { class: "lx-playhead" }),
      hoverline: h("div", { class: "lx-hoverline" }),
      scroll: h("input", { class: "lx-scroll", type: "range", min: "0", max: "1000", value: "0", title: "Scroll" }),
      hover: h("div", { class: "lx-hover-info" }),
      transcript: h("div", { class: "lx-transcript" }),
      progress: h("div", { class: "lx-progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" },
        h("div", { class: "lx-progress-bar" }), h("span", { class: "lx-progress-text" })),
      footer: h("div", { class: "lx-footer" }),
    };
    const u = this.ui;
    this.error = h("div", { class: "lx-error", role: "alert", hidden: true }, u.errorText, u.errorClose);
    this.panes = h("div", { class: "lx-panes" });
    this.layers = new LayersPanel(this); // its patching lane is one of the panes
    this.cleanups.push(() => this.layers.destroy());
    this.contrast = new ContrastPanel(this); // its foil input sits in the toolbar, its lane is one of the panes
    this.cleanups.push(() => this.contrast.destroy());
    this.paneList = PANES.map((Pane) => new Pane(this));
    for (const p of this.paneList) {
      p.mount(this.panes);
      u[p.name] = p.canvas;
    }
    this.panes.append(u.playhead, u.hoverline);
    this.cleanups.push(() => { for (const p of this.paneList) p.destroy(); });
    this.auditPanel = new AuditPanel(this);
    this.root = h("div", { class: "leafx-root", tabindex: "0", "data-lm-suppress-shortcuts": "true" },
      h("div", { class: "lx-toolbar" },
        h("span", { class: "lx-group" }, u.play, u.playWord, u.playRegion, u.time),
        h("span", { class: "lx-group" }, u.ladder, h("label", {}, "method ", u.variant),
          h("label", {}, "compare ", u.compare), u.mode),
        h("span", { class: "lx-group lx-params" }, h("label", {}, "τ ", u.tau), h("label", {}, "depth ", u.depth)),
        this.contrast.el,
        h("span", { class: "lx-group" }, u.zoomIn, u.zoomOut, u.fit, u.png),
        h("span", { class: "lx-status-box" }, u.status, u.cancel)),
      this.error, u.progress, u.transcript, this.auditPanel.bar, this.panes, u.scroll, u.hover,
      this.layers.el, this.auditPanel.table, u.footer);
    for (const b of [u.play, u.playWord, u.playRegion]) b.disabled = true;
    this.root.__leafx = this;
    this.el.append(this.root);
    this.tokenEls = [];
    this._appendTranscript(0);
    this._showDecoding();
    this._syncControls();
    this._wireControls();
  }

  /** The words from `first` on into the transcript (all of them at first, then each decoded window's). */
  _appendTranscript(first) {
    const m = this.meta;
    const frag = document.createDocumentFragment();
    for (const w of m.words.slice(first)) {
      const wordEl = h("span", { class: "lx-word", "data-word": w.index });
      for (const k of w.tokens) {
        const t = m.tokens[k];
        const p = Math.exp(t.logprob);
        const el = h("span", {
          class: "lx-tok", "data-i": k, text: t.text,
          title: `${JSON.stringify(t.text)}  p = ${p.toFixed(3)}  (log p ${t.logprob.toFixed(2)})`,
        });
        el.style.setProperty("--lx-conf", confidenceAlpha(t.logprob));
        this.tokenEls[k] = el;
        wordEl.append(el);
      }
      frag.append(wordEl, " ");
    }
    this.ui.transcript.append(frag);
    this.auditPanel.mark();
    this.ui.footer.textContent = `${m.model_name} · ${fmtTime(m.duration_s)} s · ${m.tokens.length} tokens`;
  }

  /** Each token's word, and the words' spans in seconds (from their peaks). */
  _indexWords() {
    const m = this.meta;
    this.tokenWord = new Int32Array(m.tokens.length).fill(-1);
    m.words.forEach((w) => w.tokens.forEach((k) => (this.tokenWord[k] = w.index)));
    this.spans = wordSpans(m.words.map((w) => w.peak_s ?? 0), m.duration_s);
  }

  /** The decoding indicator ("decoding 2:30 / 10:00" and a bar), hidden once the recording is decoded. */
  _showDecoding() {
    const d = this.decoding, u = this.ui;
    const st = decodingStatus(d.decodedS, this.meta.duration_s, d);
    u.progress.hidden = !st.visible;
    u.progress.classList.toggle("lx-stopped", d.stopped);
    u.progress.setAttribute("aria-valuenow", String(Math.round(100 * st.fraction)));
    u.progress.firstChild.style.width = `${(100 * st.fraction).toFixed(1)}%`;
    u.progress.lastChild.textContent = st.text;
    if (st.visible) this.root.dataset.decoding = "1";
    else delete this.root.dataset.decoding;
    this.root.dataset.decodedS = d.decodedS.toFixed(2);
  }

  _syncControls() {
    const u = this.ui, model = this.model;
    u.variant.value = model.get("method");
    for (const b of u.ladder.children) {
      const on = b.dataset.method === model.get("method");
      b.classList.toggle("lx-on", on);
      b.setAttribute("aria-pressed", String(on));
    }
    u.compare.value = model.get("compare_method") ?? "";
    u.mode.value = model.get("compare_mode");
    u.mode.hidden = !model.get("compare_method");
    if (document.activeElement !== u.tau) u.tau.value = model.get("tau");
    u.depth.value = model.get("depth");
    const takes = (k) => [model.get("method"), model.get("compare_method")]
      .some((n) => n && k in (this.methods[n]?.params ?? {}));
    u.tau.disabled = this.standalone || !takes("tau");
    u.depth.disabled = this.standalone || !takes("depth");
  }

  _wireControls() {
    const u = this.ui, model = this.model, on = (t, ev, fn, o) => this.cleanups.push(listen(t, ev, fn, o));
    on(u.play, "click", () => this.player?.toggle());
    on(u.playWord, "click", () => this.playWord());
    on(u.playRegion, "click", () => this.playRegion());
    on(u.variant, "change", () => setTraits(model, { method: u.variant.value }));
    for (const b of u.ladder.children) on(b, "click", () => setTraits(model, { method: b.dataset.method }));
    on(u.compare, "change", () => setTraits(model, { compare_method: u.compare.value || null }));
    on(u.mode, "change", () => setTraits(model, { compare_mode: u.mode.value }));
    const tau = debounce(() => {
      const v = parseFloat(u.tau.value);
      if (v > 0) setTraits(model, { tau: v });
    }, 200);
    on(u.tau, "input", tau);
    this.cleanups.push(() => tau.cancel());
    on(u.depth, "change", () => setTraits(model, { depth: u.depth.value }));
    on(u.zoomIn, "click", () => this.axis?.zoom(0.5));
    on(u.zoomOut, "click", () => this.axis?.zoom(2));
    on(u.fit, "click", () => this.axis?.fit());
    on(u.png, "click", () => this.exportPng());
    on(u.cancel, "click", () => this.store.cancel());
    on(u.errorClose, "click", () => { this.error.hidden = true; });
    on(u.transcript, "click", (e) => {
      const k = e.target.closest?.(".lx-tok")?.dataset.i;
      if (k != null) this.select(+k);
    });
    on(u.hover, "click", (e) => {
      const k = e.target.closest?.("[data-i]")?.dataset.i;
      if (k != null) this.select(+k);
    });
    on(u.scroll, "input", () => {
      const a = this.axis;
      if (a) a.setView((u.scroll.value / 1000) * (a.duration - a.span), a.span);
    });
    on(this.panes, "mousemove", (e) => this._hover(e));
    on(this.panes, "mouseleave", () => { u.hoverline.style.display = "none"; });
    on(this.panes, "click", (e) => this._click(e));
    on(this.panes, "wheel", (e) => this._wheel(e), { passive: false });
    on(this.root, "keydown", (e) => this._key(e));
    this.auditPanel.wire(on);
  }

  // ---- data from the kernel ----------------------------------------------------------
  _onMessage(msg, buffers) {
    this._mark("firstMessage");
    try {
      if (this.layers.receive(msg) || this.contrast.receive(msg, buffers)) return;
      switch (msg.type) {
        case "audio": return this._audioChunk(msg, buffers);
        case "peaks": return this._peaks(msg, buffers);
        case "mel": return this._melChunk(msg, buffers);
        case "overview": return this._overviewChunk(msg, buffers);
        case "tokens": return this._tokens(msg);
        case "map": case "progress": case "cancelled": return this.store.receive(msg, buffers);
        case "audit": return this.auditPanel.receive(msg);
        case "note": return this.showError(msg.message);
        case "error":
          if (this.store._entry(msg)) return this.store.receive(msg, buffers);
          return this.showError(msg.message);
      }
    } catch (err) {
      this.showError(`widget: ${err.message}`);
    }
  }

  _mark(name) {
    this.metrics.open ??= {};
    this.metrics.open[name] ??= Math.round(performance.now() - this.t0);
  }

  _peaks(msg, buffers) {
    if (this.peaks) return;
    this.peaks = msg;
    this.peaks.data = typedArray("int16", buffers[0]).slice();
    this._mark("peaks");
    this._maybeReady();
  }

  _audioChunk(msg, buffers) {
    if (this.audioDone || (msg.stream && msg.stream !== this.stream)) return;
    if (msg.offset + msg.n < msg.total) this.model.send({ type: "audio_ack", stream: this.stream });
    this.audio ??= new ChunkAssembler(Int16Array, msg.total);
    this._status(`loading audio ${Math.round((100 * (msg.offset + msg.n)) / msg.total)}%`);
    if (this.audio.put(msg.offset, typedArray("int16", buffers[0]))) {
      this.audioDone = true;
      this._mark("audio");
      this._audioReady();
    }
  }

  /** PCM complete: playback and fine waveform detail become available. */
  _audioReady() {
    if (!this.ready || !this.audioDone || this.player) return;
    const samples = pcm16ToFloat32(this.audio.data);
    this.audio = null;
    this.player = new Player(samples, this.meta.sample_rate);
    this.waveform.setSamples(samples);
    this.cleanups.push(this.player.onTime((t, playing) => this._onTime(t, playing)));
    this.cleanups.push(() => this.player.destroy());
    for (const b of [this.ui.play, this.ui.playWord, this.ui.playRegion]) b.disabled = false;
    this.root.dataset.audio = "1";
    this._status();
    if (this.axis.span < this.axis.duration) this.drawAll();
  }

  _melChunk(msg, buffers) {
    if (this.melDone) return;
    this.mel ??= new ChunkAssembler(Uint8Array, msg.total_cols * msg.n_mels);
    this.melInfo = msg;
    if (this.mel.put(msg.offset_cols * msg.n_mels, typedArray("uint8", buffers[0]))) {
      this.melDone = true;
      this._mark("mel");
      this._maybeReady();
    }
  }

  /** A decoded window's tokens, words and segments (or all so far, for a view that has just opened). */
  _tokens(msg) {
    const m = this.meta;
    if (msg.token0 > m.tokens.length || msg.word0 > m.words.length || msg.segment0 > m.segments.length) {
      // this view opened after that window's message went out: ask for everything so far, once
      if (!this.askedTranscript) this.model.send({ type: "transcript" });
      this.askedTranscript = true;
      return;
    }
    this.askedTranscript = false;
    const words0 = m.words.length;
    appendFrom(m.tokens, msg.token0, msg.tokens);
    appendFrom(m.words, msg.word0, msg.words);
    appendFrom(m.segments, msg.segment0, msg.segments);
    // the newest message says how far decoding is (a late catch-up never goes back)
    const d = this.decoding;
    if (msg.complete || msg.decoded_s >= d.decodedS) {
      Object.assign(d, { decodedS: msg.decoded_s, complete: d.complete || msg.complete, stopped: msg.stopped });
    }
    if (m.words.length > words0) {
      m.text = m.segments.map((s) => s.text).join(" ") || m.words.map((w) => w.text).join("");
      this._indexWords();
      this._appendTranscript(words0);
      if (m.tokens.length) this._mark("firstTokens");
      this.metrics.windows = (this.metrics.windows ?? 0) + 1;
    }
    if (d.complete) this._mark("decoded");
    this._showDecoding();
    if (!this.ready) return;
    const want = this.pendingSelect ?? (this.selected == null ? this.model.get("selected_token") : null);
    if (want != null && want < m.tokens.length) {
      this.pendingSelect = null;
      this.select(want, { fromModel: true });
    }
    if (m.words.length > words0) this.drawAll(); // word regions on the waveform
  }

  _overviewChunk(msg, buffers) {
    if (!this.overview || this.overview.key !== msg.key) {
      this.overview = new Overview(msg.n_tokens, msg.n_bins, this.meta.duration_s);
      this.overview.key = msg.key;
    } else if (msg.n_tokens > this.overview.nTokens) { // a recording still being decoded: rows of new tokens
      this.overview = this.overview.grown(msg.n_tokens);
    }
    this.overview.setRows(msg.row0, typedArray("uint8", buffers[0]));
    if (this.axis) this.drawOverview();
  }

  _maybeReady() {
    if (!this.peaks || !this.melDone || this.ready) return;
    this.ready = true;
    const m = this.meta, pk = this.peaks;
    this.waveform = new Waveform(pk.data, pk.block, pk.total_samples, m.sample_rate);
    this.peaks.data = null;
    this._mark("waveform");
    const mi = this.melInfo;
    this.spectrogram = new Spectrogram(this.mel.data, mi.total_cols, mi.n_mels, mi.col_s);
    this.mel = null;
    this._mark("spectrogram");
    this.axis = new TimeAxis(m.duration_s, this.panes.clientWidth || 800);
    this.cleanups.push(this.axis.onChange(() => this.drawAll()));
    if (typeof ResizeObserver !== "undefined") {
      const ro = new ResizeObserver(() => {
        const w = this.panes.clientWidth;
        if (w && Math.abs(w - this.axis.width) > 0.5) this.axis.setWidth(w);
      });
      ro.observe(this.panes);
      this.cleanups.push(() => ro.disconnect());
    }
    if (typeof MutationObserver !== "undefined") {
      // host theme switches (JupyterLab sets data-jp-theme-*, VS Code body classes): redraw
      const mo = new MutationObserver(() => this.drawAll());
      mo.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "class"] });
      this.cleanups.push(() => mo.disconnect());
    }
    this.drawAll();
    this.metrics.openMs = performance.now() - this.t0;
    this.root.dataset.ready = "1";
    this._status(this.audioDone ? undefined : "loading audio…");
    this._audioReady();
    this.model.send({ type: "overview", method: m.default_method, params: {} });
    this.select(this.model.get("selected_token"), { fromModel: true });
  }

  // ---- selection and maps ------------------------------------------------------------
  params() { return { tau: this.model.get("tau"), depth: this.model.get("depth") }; }

  select(k, { fromModel = false } = {}) {
    const n = this.meta.tokens.length;
    if (fromModel && k >= n && !this.decoding.complete) {
      this.pendingSelect = k; // Python chose a token of a window this view has not been sent yet
      return;
    }
    if (!n) return;
    k = Math.min(Math.max(k | 0, 0), n - 1);
    if (this.selected !== k) {
      this.tokenEls[this.selected]?.classList.remove("lx-selected");
      this.tokenEls[k]?.classList.add("lx-selected");
      this.selected = k;
      this._revealToken(k);
      this.auditPanel.selected(k);
    }
    this.update();
    this.layers.update();
    this.contrast.update();
    // tell Python once the user settles (not inside the frame that paints the switch);
    // the change event comes back with k === this.selected and is ignored
    if (!fromModel) this.writeSelection();
  }

  /** Scrolls the transcript box (never the page) so token k is visible. */
  _revealToken(k) {
    const el = this.tokenEls[k], box = this.ui.transcript;
    if (!el || box.scrollHeight <= box.clientHeight) return;
    const top = el.offsetTop, bottom = top + el.offsetHeight;
    if (top < box.scrollTop || bottom > box.scrollTop + box.clientHeight) {
      box.scrollTop = top - box.clientHeight / 2;
    }
  }

  /** Shows the maps for the current selection, from the cache or once the kernel replies. */
  update() {
    if (!this.ready) return;
    const t0 = performance.now();
    const k = this.selected, params = this.params();
    const names = [this.model.get("method"), this.model.get("compare_method")].filter(Boolean);
    const key = `${k}:${names.join("/")}:${this.store.key(k, names[0], params)}:${this.model.get("compare_mode")}`;
    if (key !== this.wanted) this.retried = null;
    this.wanted = key;
    const hits = names.map((n) => this.store.get(k, n, params));
    if (hits.every(Boolean)) {
      this._show(key, k, names, hits);
      const ms = performance.now() - t0;
      this.metrics.switches.push(ms);
      this.metrics.lastSwitchMs = ms;
      return;
    }
    this.root.classList.add("lx-stale"); // keep the previous map, marked as stale
    Promise.all(names.map((n) => this.store.request(k, n, params, { selected: k }))).then((res) => {
      for (const r of res) if (!r.cached) this.metrics.maps.push({ key, ms: r.ms });
      if (this.wanted !== key) return;
      this._show(key, k, names, res);
      const ms = performance.now() - t0;
      this.metrics.lastFetchMs = ms;
      this.metrics.firstMapMs ??= ms;
      this.root.dataset.mapSource = "kernel";
    }, (err) => {
      if (err.cancelled) {
        // dropped while this view had moved on and then came back before the reply: ask once more
        if (this.wanted === key && err.reason === "deselected" && this.retried !== key) {
          this.retried = key;
          this.update();
        } else if (this.wanted === key) {
          this.root.classList.remove("lx-stale");
        }
        return;
      }
      if (this.wanted === key) this.root.classList.remove("lx-stale");
      this.showError(err.message);
    });
    this._prefetch(k, params);
  }

  _prefetch(k, params) {
    const v = this.model.get("method");
    if (this.methods[v]?.cost !== "fast") return;
    for (const j of [k + 1, k - 1]) {
      if (j >= 0 && j < this.meta.tokens.length) this.store.request(j, v, params, { selected: k }).catch(() => {});
    }
  }

  _show(key, k, names, hits) {
    this.current = { key, token: k, names, primary: hits[0], compare: hits[1] ?? null };
    this.regions = massRegions(hits[0].map, { frac: 0.5, startFrame: hits[0].startFrame });
    this.root.classList.remove("lx-stale");
    this.root.dataset.mapKey = this.store.key(k, names[0], this.params());
    this.drawAll();
    this.error.hidden = true;
  }

  // ---- drawing -----------------------------------------------------------------------
  theme() {
    const cs = getComputedStyle(this.root);
    const t = {};
    for (const [k, v] of Object.entries(THEME_VARS)) t[k] = cs.getPropertyValue(v).trim() || "#888";
    return t;
  }

  /** What every pane draws from: the axis and theme, the current maps per pixel column (raw,
   * and on a square-root scale so that a sharp peak does not hide the rest), the data objects. */
  frame() {
    const a = this.axis, theme = (this._theme = this.theme());
    const fs = this.meta.frame_s, cur = this.current;
    const raw = cur ? pixelMax(cur.primary.map, cur.primary.startFrame, fs, a) : null;
    const raw2 = cur?.compare ? pixelMax(cur.compare.map, cur.compare.startFrame, fs, a) : null;
    const cols2 = raw2 && raw2.map(Math.sqrt);
    return {
      axis: a, theme, frameS: fs, methods: this.methods, current: cur,
      raw, raw2, cols: raw && raw.map(Math.sqrt), cols2, diff: !!cols2 && this.model.get("compare_mode") === "diff",
      regions: cur ? this.regions : [], spans: this.spans, selectedSpan: cur ? this.tokenWord[cur.token] : -1,
      label: (n) => `${this.methods[n]?.label ?? n}`
        + (cur ? ` · ${JSON.stringify(this.meta.tokens[cur.token].text)} · √ scale` : ""),
      waveform: this.waveform, spectrogram: this.spectrogram, overview: this.overview,
      selected: this.selected ?? -1, playing: this.playingToken,
    };
  }

  drawAll() {
    if (!this.axis) return;
    const a = this.axis;
    for (const p of this.paneList) p.resize(a.width);
    this._frame = this.frame();
    for (const p of this.paneList) p.draw(this._frame);
    this._placePlayhead(this.player?.time ?? 0);
    const s = this.ui.scroll;
    s.disabled = a.span >= a.duration;
    s.value = a.span >= a.duration ? 0 : Math.round((a.t0 / (a.duration - a.span)) * 1000);
  }

  /** Redraws the overview pane alone (its rows arrived, or the selected or playing token moved). */
  drawOverview() {
    if (!this._frame) return;
    this._frame = { ...this._frame, overview: this.overview, selected: this.selected ?? -1,
      playing: this.playingToken };
    this.paneList.find((p) => p.name === "overview")?.draw(this._frame);
  }

  _placePlayhead(t) {
    const x = this.axis.timeToX(t);
    const ph = this.ui.playhead;
    ph.style.display = x < 0 || x > this.axis.width ? "none" : "";
    ph.style.transform = `translateX(${x}px)`;
    this.root.dataset.playhead = t.toFixed(3);
    this.ui.time.textContent = `${fmtTime(t)} / ${fmtTime(this.meta.duration_s)} s`;
  }

  // ---- playback ----------------------------------------------------------------------
  _onTime(t, playing) {
    this.ui.play.textContent = playing ? "❚❚ pause" : "▶ play";
    if (playing) this.axis.follow(t);
    this._placePlayhead(t);
    this.writeTime(t);
    let k = -1;
    if (playing && this.overview) {
      k = tokenUnder(this.overview.data, this.overview.nTokens, this.overview.nBins,
        binOfTime(t, this.meta.duration_s, this.overview.nBins));
    }
    if (k !== this.playingToken) {
      this.tokenEls[this.playingToken]?.classList.remove("lx-playing");
      this.tokenEls[k]?.classList.add("lx-playing");
      this.playingToken = k;
      this.drawOverview();
    }
  }

  playWord() {
    const w = this.tokenWord[this.selected];
    if (w >= 0 && this.player) this.player.play(this.spans[w].start, this.spans[w].end);
  }

  playRegion() {
    if (!this.player || !this.regions?.length) return;
    const fs = this.meta.frame_s;
    this.player.playSegments(this.regions.map((r) => ({ start: r.start * fs, end: r.end * fs })));
  }

  // ---- pointer and keys --------------------------------------------------------------
  _paneTime(e) {
    const r = this.panes.getBoundingClientRect();
    return { x: e.clientX - r.left, y: e.clientY - r.top, t: this.axis.xToTime(e.clientX - r.left) };
  }

  tokensAtTime(t) {
    const o = this.overview;
    if (!o) return [];
    return tokensAt(o.data, o.nTokens, o.nBins, binOfTime(t, this.meta.duration_s, o.nBins));
  }

  _hover(e) {
    if (!this.axis) return;
    const { x, t } = this._paneTime(e);
    const hl = this.ui.hoverline;
    hl.style.display = "";
    hl.style.transform = `translateX(${x}px)`;
    this._showTokensAt(t);
  }

  _showTokensAt(t) {
    const found = this.tokensAtTime(t).slice(0, 8);
    const hv = this.ui.hover;
    hv.replaceChildren(h("span", { class: "lx-hover-t", text: `${fmtTime(t)} s: ` }));
    if (!this.overview) hv.append("(token overview loading…)");
    else if (!found.length) hv.append("no token rests here");
    for (const f of found) {
      hv.append(h("span", { class: "lx-hover-tok", "data-i": f.token,
        text: `${this.meta.tokens[f.token].text} ${f.weight.toFixed(2)}` }), " ");
    }
  }

  _click(e) {
    if (!this.axis) return;
    this.root.focus({ preventScroll: true });
    const point = { ...this._paneTime(e), target: e.target }, t = point.t;
    if (this.paneList.some((p) => p.click?.(point))) return;
    this.player?.seek(t);
    this._showTokensAt(t);
  }

  _wheel(e) {
    if (!this.axis) return;
    if (e.ctrlKey || e.metaKey || e.altKey) {
      e.preventDefault();
      this.axis.zoom(Math.exp(e.deltaY * 0.002), this._paneTime(e).t);
    } else if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
      e.preventDefault();
      this.axis.scrollBy((e.deltaX || e.deltaY) * this.axis.scale);
    }
  }

  _key(e) {
    if (!this.ready || e.target.matches?.("input, select")) return;
    const stop = () => { e.preventDefault(); e.stopPropagation(); };
    const p = this.player;
    if (e.key === " ") { stop(); p?.toggle(); }
    else if (e.key === "ArrowRight" && e.shiftKey) { stop(); p?.seek(p.time + 1); }
    else if (e.key === "ArrowLeft" && e.shiftKey) { stop(); p?.seek(p.time - 1); }
    else if (e.key === "ArrowRight") { stop(); this.select(this.selected + 1); }
    else if (e.key === "ArrowLeft") { stop(); this.select(this.selected - 1); }
    else if (e.key === "Home") { stop(); p?.seek(0); }
    else if (this.auditPanel.key(e)) stop();
  }

  // ---- status, errors, export --------------------------------------------------------
  /** The busy marker: `text`, or what the kernel computes for this view (the slow method's note,
   * seconds so far and the last such map's time), with a cancel control. */
  _status(text) {
    const s = this.ui.status;
    const running = text == null ? this.store.running() : [];
    const waiting = text == null && this.store.busy;
    if (running.length) {
      const r = running[running.length - 1].running;
      const secs = (performance.now() - r.since) / 1000;
      text = `${r.note} · ${secs.toFixed(0)} s` + (r.expectedS ? ` (last one took ${r.expectedS.toFixed(1)} s)` : "");
    } else if (waiting) {
      const names = [...new Set(this.store.pendingKeys().map((k) => k.split("|")[1]))];
      text = `computing ${names.map((n) => this.methods[n]?.label ?? n).join(", ")}…`;
    }
    s.textContent = text ?? "";
    s.classList.toggle("lx-busy", !!text);
    this.root.classList.toggle("lx-is-busy", !!text);
    this.ui.cancel.hidden = this.standalone || !waiting;
    // the seconds count while a slow map runs
    if (running.length && !this.ticker) this.ticker = setInterval(() => this._status(), 1000);
    else if (!running.length && this.ticker) this.ticker = clearInterval(this.ticker);
  }

  showError(message) {
    this.ui.errorText.textContent = message;
    this.error.hidden = false;
    this.metrics.lastError = message;
  }

  /** Stacks the canvases into one PNG and downloads it; returns the data URL. */
  exportPng() {
    const canvases = this.paneList.map((p) => p.canvas)
      .filter((c) => c.style.display !== "none" && c.width > 1);
    const dpr = globalThis.devicePixelRatio || 1;
    const title = 28 * dpr;
    const out = document.createElement("canvas");
    out.width = Math.max(...canvases.map((c) => c.width));
    out.height = title + canvases.reduce((s, c) => s + c.height, 0);
    const ctx = out.getContext("2d");
    const theme = this._theme ?? this.theme();
    ctx.fillStyle = theme.bg;
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.fillStyle = theme.fg;
    ctx.font = `${13 * dpr}px sans-serif`;
    const tok = this.current ? this.meta.tokens[this.current.token].text : "";
    ctx.fillText(`${this.meta.model_name} · token ${JSON.stringify(tok)} · ${this.current?.names.join(" vs ") ?? ""}`, 6 * dpr, 19 * dpr);
    let y = title;
    for (const c of canvases) { ctx.drawImage(c, 0, y); y += c.height; }
    const url = out.toDataURL("image/png");
    const a = h("a", { href: url, download: `leafx-token-${this.selected ?? 0}.png` });
    a.click();
    this.metrics.pngBytes = url.length;
    return url;
  }

  destroy() {
    clearInterval(this.ticker);
    for (const off of this.cleanups.splice(0)) off();
    this.root.remove();
  }
}
