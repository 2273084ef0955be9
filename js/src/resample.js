// A take's audio on its way to the kernel (pure, unit-tested in node): the microphone's blocks at
// the AudioContext's rate (44.1 or 48 kHz) resampled to 16 kHz mono as they come, then cut into
// numbered chunks, and the take's length limit.
//
// Why a windowed-sinc resampler here rather than an OfflineAudioContext: it streams (chunks go to
// the kernel while the take is recorded, so "stop" needs no long pass over 60 s of audio and the
// kernel sees a take that is too long as it grows), it is the same in every browser (the offline
// context's resampler is the browser's own choice), and it runs in node, where it is tested. A
// linear interpolator would fold everything above 8 kHz back into the speech band.

export const TAKE_RATE = 16000;

/** sin(pi x) / (pi x). */
function sinc(x) {
  if (x === 0) return 1;
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

/** Blackman window on [-1, 1]. */
function blackman(u) {
  if (Math.abs(u) >= 1) return 0;
  const a = Math.PI * (u + 1); // 0..2pi over the window
  return 0.42 - 0.5 * Math.cos(a) + 0.08 * Math.cos(2 * a);
}

/**
 * Streaming windowed-sinc resampler. `push(block)` takes input samples at `inRate` and returns the
 * output samples at `outRate` that are complete; `flush()` returns the rest (the signal is taken as
 * zero past its end). Zero phase: output n is the input's value at time n / outRate, so a pure
 * tone keeps its phase. The low-pass cuts at `cutoff` (a fraction of the lower Nyquist rate).
 */
export class StreamResampler {
  constructor(inRate, outRate = TAKE_RATE, { zeros = 16, cutoff = 0.92, steps = 512 } = {}) {
    if (!(inRate > 0 && outRate > 0)) throw new Error(`sample rates must be positive, got ${inRate} and ${outRate}`);
    this.inRate = inRate;
    this.outRate = outRate;
    this.step = inRate / outRate; // input samples per output sample
    this.fc = Math.min(1, outRate / inRate) * cutoff; // cutoff in cycles per input sample x 2
    this.half = Math.ceil(zeros / this.fc); // kernel half-width in input samples
    // the kernel on [0, half] at `steps` points per input sample, read with linear interpolation
    this.steps = steps;
    this.table = new Float32Array(this.half * steps + 2);
    for (let i = 0; i < this.table.length; i++) {
      const d = i / steps;
      this.table[i] = this.fc * sinc(this.fc * d) * blackman(d / this.half);
    }
    this.buf = new Float32Array(0); // input samples from absolute index `base` on
    this.base = 0;
    this.received = 0; // input samples pushed
    this.n = 0; // next output sample
  }

  _kernel(d) {
    const x = Math.abs(d) * this.steps;
    const i = Math.floor(x);
    if (i >= this.table.length - 1) return 0;
    const f = x - i;
    return this.table[i] * (1 - f) + this.table[i + 1] * f;
  }

  /** Output samples whose kernel lies within input [0, end): those go out now. */
  _produce(end, out, limit = Infinity) {
    const buf = this.buf, base = this.base;
    while (this.n < limit) {
      const x = this.n * this.step; // input position of output sample n
      const hi = Math.floor(x) + this.half;
      if (hi >= end) break;
      let acc = 0;
      for (let k = Math.max(Math.ceil(x) - this.half, 0); k <= hi; k++) {
        const v = k - base < buf.length ? buf[k - base] : 0; // past the end: zero (flush)
        acc += v * this._kernel(x - k);
      }
      out.push(acc);
      this.n++;
    }
  }

  _append(block) {
    // drop what no future output sample reaches, keep the rest, add the block
    const keepFrom = Math.max(0, Math.floor(this.n * this.step) - this.half - 1);
    const drop = Math.min(Math.max(0, keepFrom - this.base), this.buf.length);
    const next = new Float32Array(this.buf.length - drop + block.length);
    next.set(this.buf.subarray(drop));
    next.set(block, this.buf.length - drop);
    this.buf = next;
    this.base += drop;
    this.received += block.length;
  }

  push(block) {
    this._append(block);
    const out = [];
    this._produce(this.received, out);
    return Float32Array.from(out);
  }

  /** The remaining output: ceil(inputs x outRate / inRate) samples in all. */
  flush() {
    const total = Math.ceil((this.received * this.outRate) / this.inRate - 1e-9);
    const out = [];
    this._produce(Infinity, out, total);
    return Float32Array.from(out);
  }
}

/**
 * Cuts a take's samples into chunks of `chunkSamples` with their offsets, and stops at `maxSamples`
 * (the take's limit). `push(samples)` returns {chunks: [{offset, data}], full}; `full` is true once the
 * limit is reached (samples past it are dropped). `flush()` returns the last, shorter chunk.
 */
export class TakeChunker {
  constructor(chunkSamples, maxSamples = Infinity) {
    if (!(chunkSamples >= 1)) throw new Error(`chunkSamples must be at least 1, got ${chunkSamples}`);
    this.chunkSamples = Math.floor(chunkSamples);
    this.maxSamples = maxSamples;
    this.pending = new Float32Array(this.chunkSamples);
    this.fill = 0;
    this.sent = 0; // samples already in chunks
  }

  get total() { return this.sent + this.fill; }

  get full() { return this.total >= this.maxSamples; }

  push(samples) {
    const chunks = [];
    let i = 0;
    const room = Math.max(0, this.maxSamples - this.total);
    const n = Math.min(samples.length, room);
    while (i < n) {
      const take = Math.min(n - i, this.chunkSamples - this.fill);
      this.pending.set(samples.subarray(i, i + take), this.fill);
      this.fill += take;
      i += take;
      if (this.fill === this.chunkSamples) chunks.push(this._emit());
    }
    return { chunks, full: this.full };
  }

  _emit() {
    const chunk = { offset: this.sent, data: this.pending.slice(0, this.fill) };
    this.sent += this.fill;
    this.fill = 0;
    return chunk;
  }

  flush() { return this.fill ? [this._emit()] : []; }
}

/** Root mean square of a block (the level meter). */
export function rms(block) {
  let s = 0;
  for (let i = 0; i < block.length; i++) s += block[i] * block[i];
  return block.length ? Math.sqrt(s / block.length) : 0;
}

/** Averages the channels of one block (Float32Arrays of equal length) into mono. */
export function mixToMono(channels) {
  if (channels.length === 1) return Float32Array.from(channels[0]);
  const n = channels[0]?.length ?? 0, out = new Float32Array(n);
  for (const c of channels) for (let i = 0; i < n; i++) out[i] += c[i];
  for (let i = 0; i < n; i++) out[i] /= channels.length;
  return out;
}

/** What the page says about a getUserMedia failure (a DOMException's name), in one sentence. */
export function micErrorMessage(err, { secure = true, host = "" } = {}) {
  if (!secure) return insecureMessage(host);
  const name = err?.name ?? "";
  if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") {
    return "Microphone permission denied: allow the microphone for this page (the icon in the address bar), then press record again.";
  }
  if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") {
    return "No microphone found: connect one (or enable it in the system settings), then press record again.";
  }
  if (name === "NotReadableError" || name === "TrackStartError" || name === "AbortError") {
    return `The microphone could not be opened (is another application using it?): ${err.message}`;
  }
  return `Recording failed: ${name || "error"}: ${err?.message ?? err}`;
}

export function insecureMessage(host) {
  return `Recording needs a secure page: browsers give the microphone only to https:// pages and to localhost, `
    + `and this page is http://${host}. Open Jupyter over https (Binder does), on localhost, `
    + `or through an ssh tunnel (ssh -L 8888:localhost:8888 …).`;
}

export function noMicApiMessage() {
  return "No microphone is available here: this browser offers no microphone access (navigator.mediaDevices is missing).";
}

/** m:ss. */
export function clock(t) {
  const s = Math.max(0, Math.floor(t));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}
