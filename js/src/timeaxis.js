// One time axis shared by every pane: seconds <-> pixels, zoom around a point, scroll.

export class TimeAxis {
  constructor(duration, width = 1, { minSpan = 0.05 } = {}) {
    this.duration = Math.max(duration, 1e-6);
    this.width = Math.max(width, 1);
    this.minSpan = Math.min(minSpan, this.duration);
    this.t0 = 0;
    this.span = this.duration;
    this.listeners = new Set();
  }
  get t1() { return this.t0 + this.span; }
  timeToX(t) { return ((t - this.t0) / this.span) * this.width; }
  xToTime(x) { return this.t0 + (x / this.width) * this.span; }
  /** Seconds per pixel. */
  get scale() { return this.span / this.width; }

  setWidth(width) {
    this.width = Math.max(width, 1);
    this._emit();
  }
  setView(t0, span) {
    span = Math.min(Math.max(span, this.minSpan), this.duration);
    t0 = Math.min(Math.max(t0, 0), this.duration - span);
    if (t0 === this.t0 && span === this.span) return false;
    this.t0 = t0;
    this.span = span;
    this._emit();
    return true;
  }
  /** factor < 1 zooms in; the time under `anchorT` stays at the same pixel. */
  zoom(factor, anchorT = this.t0 + this.span / 2) {
    const frac = (anchorT - this.t0) / this.span;
    const span = Math.min(Math.max(this.span * factor, this.minSpan), this.duration);
    return this.setView(anchorT - frac * span, span);
  }
  scrollBy(dt) { return this.setView(this.t0 + dt, this.span); }
  fit() { return this.setView(0, this.duration); }
  /** Pages the view so `t` is visible (used to follow the playhead). */
  follow(t) {
    if (t >= this.t0 && t <= this.t1) return false;
    return this.setView(t - this.span * 0.1, this.span);
  }
  onChange(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
  _emit() { for (const fn of this.listeners) fn(this); }
}

/** Visible index range [i0, i1) of a sequence sampled every `step` seconds. */
export function visibleRange(axis, step, n) {
  const i0 = Math.max(0, Math.floor(axis.t0 / step));
  const i1 = Math.min(n, Math.ceil(axis.t1 / step) + 1);
  return [i0, Math.max(i0, i1)];
}
