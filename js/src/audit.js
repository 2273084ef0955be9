// The audit in the view: flagged tokens marked in the transcript, a control that steps through them
// (buttons, and the n / p keys), and the audit table, sorted by score, whose row click selects the token.
// The kernel sends {type: "audit", state, ...} messages (leafx_widgets/widget/protocol.py); the page asks
// with {type: "audit"} when the user opens the table and the kernel has no audit yet.
import { h, listen } from "./dom.js";

const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);

/** Rows by score, highest first; a missing score last; ties in transcript order. */
export function sortRows(rows) {
  return [...rows].sort((a, b) => {
    const x = num(a.score), y = num(b.score);
    if (x !== y) return x == null ? 1 : y == null ? -1 : y - x;
    return a.token - b.token;
  });
}

/** The flagged tokens' indices, in transcript order. */
export function flaggedTokens(rows) {
  return rows.filter((r) => r.flag).map((r) => r.token).sort((a, b) => a - b);
}

/** The flagged token after (dir > 0) or before (dir < 0) token `current`, wrapping around; -1 when none. */
export function stepFlag(flags, current, dir) {
  if (!flags.length) return -1;
  if (dir > 0) return flags.find((k) => k > current) ?? flags[0];
  for (let i = flags.length - 1; i >= 0; i--) if (flags[i] < current) return flags[i];
  return flags[flags.length - 1];
}

/** "score 0.82 · substitution" (the error only when the audit had a reference). */
export function flagTitle(row) {
  const s = num(row.score);
  return `score ${s == null ? "–" : s.toFixed(2)}` + (row.error ? ` · ${row.error}` : "");
}

const fixed = (d) => (v) => (num(v) == null ? "–" : num(v).toFixed(d));
// the table's columns; one whose values are all missing (e.g. error without a reference) is left out
export const COLUMNS = [
  { key: "token", label: "#", fmt: String },
  { key: "text", label: "token", fmt: (v) => JSON.stringify(v ?? "") },
  { key: "word", label: "word", fmt: (v) => v ?? "" },
  { key: "time", label: "time (s)", fmt: fixed(2) }, // start_s, or the map's peak_s without a token timing
  { key: "logprob", label: "log p", fmt: fixed(2) },
  { key: "entropy", label: "entropy", fmt: fixed(2) },
  { key: "outside", label: "outside", fmt: fixed(2) },
  { key: "stability", label: "stability", fmt: fixed(2) },
  { key: "score", label: "score", fmt: fixed(3) },
  { key: "error", label: "error", fmt: (v) => v ?? "" },
  { key: "ref_word", label: "reference", fmt: (v) => v ?? "" },
];
const cell = (r, key) => (key === "time" ? num(r.start_s) ?? num(r.peak_s) : r[key]);

export function shownColumns(rows) {
  return COLUMNS.filter((c) => c.key === "token" || c.key === "score" || rows.some((r) => cell(r, c.key) != null));
}

export class AuditPanel {
  constructor(view) {
    this.view = view;
    this.rows = null; // sorted by score once the audit has come
    this.byToken = new Map(); // token -> row
    this.flags = [];
    this.state = "none"; // none | computing | ready | failed
    this.ui = {
      prev: h("button", { class: "lx-flag-prev", title: "Previous flagged token (p)", text: "◀ flag" }),
      next: h("button", { class: "lx-flag-next", title: "Next flagged token (n)", text: "flag ▶" }),
      count: h("span", { class: "lx-flag-count" }),
      toggle: h("button", { class: "lx-audit-toggle", title: "The audit table: tokens by suspicion score",
        "aria-expanded": "false", text: "audit table" }),
      status: h("span", { class: "lx-audit-status", role: "status" }),
      tbody: h("tbody"),
      thead: h("thead"),
    };
    const u = this.ui;
    this.bar = h("div", { class: "lx-audit-bar" }, u.prev, u.next, u.count, u.toggle, u.status);
    this.table = h("div", { class: "lx-audit", hidden: true },
      h("table", { class: "lx-audit-table" }, u.thead, u.tbody));
    this.bar.hidden = view.meta.audit === false; // an HTML export saved without an audit
    this._count();
  }

  /** The buttons and the table's row clicks; `on(target, event, fn)` registers the listener's removal. */
  wire(on = listen) {
    const u = this.ui;
    on(u.prev, "click", () => this.step(-1));
    on(u.next, "click", () => this.step(1));
    on(u.toggle, "click", () => (this.table.hidden ? this.open() : this.close()));
    on(u.tbody, "click", (e) => {
      const k = e.target.closest?.("tr[data-i]")?.dataset.i;
      if (k != null) this.view.select(+k);
    });
  }

  /** Shows the table, asking the kernel for the audit when it has not sent one. */
  open() {
    this.table.hidden = false;
    this.ui.toggle.setAttribute("aria-expanded", "true");
    this.ui.toggle.classList.add("lx-on");
    this.ask();
    if (this.view.selected != null) this.selected(this.view.selected);
  }

  close() {
    this.table.hidden = true;
    this.ui.toggle.setAttribute("aria-expanded", "false");
    this.ui.toggle.classList.remove("lx-on");
  }

  ask() {
    if (this.state !== "none" && this.state !== "failed") return;
    if (this.view.standalone) return this._status("this export holds no audit");
    this.state = "computing";
    this._status("auditing…");
    this.view.model.send({ type: "audit" });
  }

  /** A kernel message {type: "audit", state: "computing" | "ready" | "failed", ...}. */
  receive(msg) {
    if (msg.state === "computing") {
      if (this.state === "ready") return;
      this.state = "computing";
      this._status(msg.note ? `auditing: ${msg.note}…`
        : msg.total ? `auditing: maps of ${msg.done} / ${msg.total} tokens…` : "auditing…");
      this.view.root.dataset.audit = "computing";
    } else if (msg.state === "ready") {
      this.setRows(msg.rows);
    } else if (msg.state === "failed") {
      this.state = "failed";
      this._status("audit failed");
      this.view.root.dataset.audit = "failed";
      this.view.showError(msg.message);
    }
  }

  setRows(rows) {
    this.rows = sortRows(rows);
    this.byToken = new Map(this.rows.map((r) => [r.token, r]));
    this.flags = flaggedTokens(this.rows);
    this.state = "ready";
    this._status("");
    this._render();
    this.mark();
    this._count();
    this.view.root.dataset.audit = "ready";
    if (this.view.selected != null) this.selected(this.view.selected);
    if (this.pendingStep) this.step(this.pendingStep);
    this.pendingStep = 0;
  }

  /** Marks the flagged tokens the transcript holds (again after a window's tokens are appended). */
  mark() {
    for (const k of this.flags) {
      const el = this.view.tokenEls[k];
      if (!el || el.classList.contains("lx-flagged")) continue;
      const row = this.byToken.get(k);
      el.classList.add("lx-flagged");
      if (row.error) el.dataset.error = row.error;
      el.title = `flagged: ${flagTitle(row)}\n${el.title}`;
    }
  }

  /** The flagged token after (dir 1) or before (dir -1) the selection, selected. */
  step(dir) {
    if (this.state !== "ready") {
      this.pendingStep = dir; // taken once the audit comes
      return this.ask();
    }
    const k = stepFlag(this.flags, this.view.selected ?? -1, dir);
    if (k >= 0) this.view.select(k);
  }

  /** The view's keydown: n / p step through the flags. True when the key was handled. */
  key(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return false;
    if (e.key === "n" || e.key === "p") {
      this.step(e.key === "n" ? 1 : -1);
      return true;
    }
    return false;
  }

  /** The view selected token k: its row highlighted (and scrolled to), the flag counter updated. */
  selected(k) {
    this.ui.tbody.querySelector("tr.lx-row-selected")?.classList.remove("lx-row-selected");
    const tr = this.ui.tbody.querySelector(`tr[data-i="${k}"]`);
    if (tr) {
      tr.classList.add("lx-row-selected");
      const box = this.table;
      if (!box.hidden && (tr.offsetTop < box.scrollTop || tr.offsetTop + tr.offsetHeight > box.scrollTop + box.clientHeight)) {
        box.scrollTop = tr.offsetTop - box.clientHeight / 2;
      }
    }
    this._count();
  }

  _render() {
    const cols = shownColumns(this.rows), u = this.ui;
    u.thead.replaceChildren(h("tr", {}, ...cols.map((c) => h("th", { text: c.label, "data-col": c.key }))));
    const frag = document.createDocumentFragment();
    for (const r of this.rows) {
      const tr = h("tr", { "data-i": r.token, class: r.flag ? "lx-row-flagged" : null, title: "Select this token" },
        ...cols.map((c) => h("td", { text: c.fmt(cell(r, c.key)), "data-col": c.key })));
      frag.append(tr);
    }
    u.tbody.replaceChildren(frag);
  }

  _count() {
    const u = this.ui, n = this.flags.length, ready = this.state === "ready";
    u.prev.disabled = u.next.disabled = ready && !n;
    const at = this.flags.indexOf(this.view.selected);
    u.count.textContent = !ready ? "" : !n ? "no flagged tokens"
      : at >= 0 ? `flag ${at + 1} of ${n}` : `${n} flagged`;
  }

  _status(text) {
    this.ui.status.textContent = text;
    this.ui.status.classList.toggle("lx-busy", !!text && this.state === "computing");
  }
}
