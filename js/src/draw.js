// Canvas drawing on the shared TimeAxis: the data behind the panes (waveform, spectrogram, overview)
// and the lanes. Each draws in CSS pixels into a 2D context; the panes (panes/) own the canvases.
import { SPECTROGRAM_LUT, HEAT_LUT, divergingColor } from "./colors.js";

/** Sizes a canvas to its CSS box times devicePixelRatio; returns a context in CSS px. */
export function fitCanvas(canvas, cssWidth, cssHeight) {
  const dpr = globalThis.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(cssWidth * dpr));
  const h = Math.max(1, Math.round(cssHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const css = `${cssHeight}px`;
  if (canvas.style.height !== css) canvas.style.height = css;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

export class Waveform {
  /**
   * peaks: Int16Array of (min, max) pairs, one per `block` samples (sent before the PCM);
   * setSamples() adds the float samples for drawing when zoomed in past one block a pixel.
   */
  constructor(peaks, block, nSamples, sampleRate) {
    this.block = block;
    this.nSamples = nSamples;
    this.sampleRate = sampleRate;
    const n = peaks.length / 2;
    this.mins = new Float32Array(n);
    this.maxs = new Float32Array(n);
    let peak = 1e-4;
    for (let b = 0; b < n; b++) {
      this.mins[b] = peaks[2 * b] / 32768;
      this.maxs[b] = peaks[2 * b + 1] / 32768;
      peak = Math.max(peak, -this.mins[b], this.maxs[b]);
    }
    this.gain = 0.95 / peak;
    this.samples = null;
  }

  setSamples(samples) { this.samples = samples; }

  /** min/max of samples in [t0, t1). */
  range(t0, t1) {
    const s0 = Math.max(0, Math.floor(t0 * this.sampleRate));
    const s1 = Math.min(this.nSamples, Math.ceil(t1 * this.sampleRate));
    let lo = 0, hi = 0;
    if (!this.samples || s1 - s0 >= 4 * this.block) {
      const b1 = Math.min(this.mins.length, Math.ceil(s1 / this.block));
      for (let b = Math.floor(s0 / this.block); b < b1; b++) {
        if (this.mins[b] < lo) lo = this.mins[b];
        if (this.maxs[b] > hi) hi = this.maxs[b];
      }
    } else {
      for (let i = s0; i < s1; i++) {
        const v = this.samples[i];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    return [lo, hi];
  }

  draw(ctx, axis, w, h, { theme, spans = [], selectedSpan = -1, mapCols = null, regions = [], frameS }) {
    ctx.fillStyle = theme.bg;
    ctx.fillRect(0, 0, w, h);
    // word regions
    spans.forEach((s, i) => {
      const x0 = axis.timeToX(s.start), x1 = axis.timeToX(s.end);
      if (x1 < 0 || x0 > w) return;
      ctx.fillStyle = i === selectedSpan ? theme.wordSelected : i % 2 ? theme.wordA : theme.wordB;
      ctx.fillRect(x0, 0, Math.max(1, x1 - x0), h);
    });
    // attributed region of the selected token
    ctx.fillStyle = theme.region;
    for (const r of regions) {
      const x0 = axis.timeToX(r.start * frameS), x1 = axis.timeToX(r.end * frameS);
      ctx.fillRect(x0, h - 4, Math.max(1, x1 - x0), 4);
    }
    // attribution of the selected token, as an area from the bottom
    if (mapCols) drawArea(ctx, mapCols, w, h, theme.attr);
    // waveform
    const mid = h / 2;
    ctx.fillStyle = theme.wave;
    for (let x = 0; x < w; x++) {
      const [lo, hi] = this.range(axis.xToTime(x), axis.xToTime(x + 1));
      const y0 = mid - hi * this.gain * mid, y1 = mid - lo * this.gain * mid;
      ctx.fillRect(x, y0, 1, Math.max(1, y1 - y0));
    }
  }
}

/** Filled area of per-pixel values (normalised to their maximum) from the bottom. */
function drawArea(ctx, cols, w, h, color) {
  let max = 0;
  for (let i = 0; i < cols.length; i++) max = Math.max(max, cols[i]);
  if (!(max > 0)) return;
  ctx.fillStyle = color;
  ctx.beginPath();
  ctx.moveTo(0, h);
  for (let x = 0; x < Math.min(w, cols.length); x++) {
    const y = h - (cols[x] / max) * h * 0.95;
    ctx.lineTo(x, y);
    ctx.lineTo(x + 1, y);
  }
  ctx.lineTo(w, h);
  ctx.closePath();
  ctx.fill();
}

export class Spectrogram {
  /** codes: Uint8Array time-major (nCols x nMels); one column every colS seconds. */
  constructor(codes, nCols, nMels, colS, { tile = 2048 } = {}) {
    this.nCols = nCols;
    this.nMels = nMels;
    this.colS = colS;
    this.tiles = [];
    for (let c0 = 0; c0 < nCols; c0 += tile) {
      const tw = Math.min(tile, nCols - c0);
      const canvas = makeCanvas(tw, nMels);
      const tctx = canvas.getContext("2d");
      const img = tctx.createImageData(tw, nMels);
      const px = img.data;
      for (let c = 0; c < tw; c++) {
        const base = (c0 + c) * nMels;
        for (let m = 0; m < nMels; m++) {
          const v = codes[base + m];
          const o = ((nMels - 1 - m) * tw + c) * 4; // low frequencies at the bottom
          px[o] = SPECTROGRAM_LUT[v * 4];
          px[o + 1] = SPECTROGRAM_LUT[v * 4 + 1];
          px[o + 2] = SPECTROGRAM_LUT[v * 4 + 2];
          px[o + 3] = 255;
        }
      }
      tctx.putImageData(img, 0, 0);
      this.tiles.push({ c0, tw, canvas });
    }
  }

  draw(ctx, axis, w, h, { theme, mapCols = null }) {
    ctx.fillStyle = theme.bg;
    ctx.fillRect(0, 0, w, h);
    ctx.imageSmoothingEnabled = axis.scale < this.colS; // smooth only when stretched
    const c0 = axis.t0 / this.colS, c1 = axis.t1 / this.colS;
    for (const t of this.tiles) {
      const a = Math.max(c0, t.c0), b = Math.min(c1, t.c0 + t.tw);
      if (b <= a) continue;
      const dx = axis.timeToX(a * this.colS), dw = axis.timeToX(b * this.colS) - dx;
      ctx.drawImage(t.canvas, a - t.c0, 0, b - a, this.nMels, dx, 0, dw, h);
    }
    if (mapCols) {
      // dim what the token does not rest on, then trace its map on top
      let max = 0;
      for (let i = 0; i < mapCols.length; i++) max = Math.max(max, mapCols[i]);
      if (max > 0) {
        ctx.fillStyle = "rgba(0, 0, 0, 0.55)";
        for (let x = 0; x < Math.min(w, mapCols.length); x++) {
          const a = 1 - mapCols[x] / max;
          if (a > 0.02) {
            ctx.globalAlpha = a;
            ctx.fillRect(x, 0, 1, h);
          }
        }
        ctx.globalAlpha = 1;
        ctx.strokeStyle = theme.attrLine;
        ctx.lineWidth = 1.5;
        ctx.beginPath();
        for (let x = 0; x < Math.min(w, mapCols.length); x++) {
          const y = h - (mapCols[x] / max) * h * 0.9 - 1;
          if (x === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
        }
        ctx.stroke();
      }
    }
  }
}

/** One lane of bars for a map (per-pixel values), with a caption. */
export function drawLane(ctx, w, h, cols, { theme, label, color }) {
  ctx.fillStyle = theme.bg;
  ctx.fillRect(0, 0, w, h);
  if (cols) {
    let max = 0;
    for (let i = 0; i < cols.length; i++) max = Math.max(max, cols[i]);
    if (max > 0) {
      ctx.fillStyle = color;
      for (let x = 0; x < Math.min(w, cols.length); x++) {
        const bh = (cols[x] / max) * (h - 2);
        if (bh > 0.2) ctx.fillRect(x, h - bh, 1, bh);
      }
    }
  }
  caption(ctx, label, theme);
}

/** Difference lane: a - b per pixel on a signed square-root scale, diverging colours. */
export function drawDiffLane(ctx, w, h, a, b, { theme, label }) {
  ctx.fillStyle = theme.bg;
  ctx.fillRect(0, 0, w, h);
  let max = 0;
  const n = Math.min(w, a.length, b.length);
  for (let x = 0; x < n; x++) max = Math.max(max, Math.abs(a[x] - b[x]));
  const mid = h / 2;
  ctx.fillStyle = theme.grid;
  ctx.fillRect(0, mid, w, 1);
  if (max > 0) {
    for (let x = 0; x < n; x++) {
      const r = (a[x] - b[x]) / max, d = Math.sign(r) * Math.sqrt(Math.abs(r));
      ctx.fillStyle = divergingColor(d, 1);
      const bh = Math.abs(d) * (mid - 1);
      ctx.fillRect(x, d >= 0 ? mid - bh : mid, 1, Math.max(bh, 0.5));
    }
  }
  caption(ctx, label, theme);
}

function caption(ctx, text, theme) {
  if (!text) return;
  ctx.font = "11px sans-serif";
  const tw = ctx.measureText(text).width;
  ctx.fillStyle = theme.captionBg;
  ctx.fillRect(2, 2, tw + 8, 15);
  ctx.fillStyle = theme.fg;
  ctx.fillText(text, 6, 13);
}

export class Overview {
  constructor(nTokens, nBins, duration) {
    this.nTokens = nTokens;
    this.nBins = nBins;
    this.duration = duration;
    this.data = new Uint8Array(nTokens * nBins);
    this.canvas = makeCanvas(Math.max(nBins, 1), Math.max(nTokens, 1));
    this.rowsDone = 0;
  }
  setRows(row0, bytes) {
    const nRows = bytes.length / this.nBins;
    this.data.set(bytes, row0 * this.nBins);
    const img = this.canvas.getContext("2d").createImageData(this.nBins, nRows);
    for (let i = 0; i < bytes.length; i++) {
      const v = bytes[i] * 4;
      img.data[i * 4] = HEAT_LUT[v];
      img.data[i * 4 + 1] = HEAT_LUT[v + 1];
      img.data[i * 4 + 2] = HEAT_LUT[v + 2];
      img.data[i * 4 + 3] = HEAT_LUT[v + 3];
    }
    this.canvas.getContext("2d").putImageData(img, 0, row0);
    this.rowsDone += nRows;
  }
  /** A copy with room for `nTokens` rows (a recording still being decoded has sent more tokens). */
  grown(nTokens) {
    const out = new Overview(nTokens, this.nBins, this.duration);
    out.key = this.key;
    out.data.set(this.data);
    out.canvas.getContext("2d").drawImage(this.canvas, 0, 0);
    out.rowsDone = this.rowsDone;
    return out;
  }
  draw(ctx, axis, w, h, { theme, selected = -1, playing = -1 }) {
    ctx.fillStyle = theme.bg;
    ctx.fillRect(0, 0, w, h);
    const binS = this.duration / this.nBins;
    const b0 = axis.t0 / binS, b1 = axis.t1 / binS;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this.canvas, b0, 0, Math.max(b1 - b0, 1e-3), this.nTokens, 0, 0, w, h);
    const rowH = h / this.nTokens;
    const band = (k, color) => {
      if (k < 0) return;
      const y = k * rowH, bh = Math.max(rowH, 2);
      ctx.strokeStyle = color;
      ctx.lineWidth = 1;
      ctx.strokeRect(0.5, y + 0.5 - (bh - rowH) / 2, w - 1, bh);
    };
    band(playing, theme.playing);
    band(selected, theme.accent);
  }
}

function makeCanvas(w, h) {
  if (typeof OffscreenCanvas !== "undefined") return new OffscreenCanvas(w, h);
  const c = document.createElement("canvas");
  c.width = w;
  c.height = h;
  return c;
}
