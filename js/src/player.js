// The one owner of playback and of the current time. Web Audio from float32 PCM;
// the clock is performance.now() anchored at start, so it also runs where the audio
// device is a null sink (headless browsers, remote desktops).

export class Player {
  constructor(samples, sampleRate) {
    this.samples = samples;
    this.sampleRate = sampleRate;
    this.duration = samples.length / sampleRate;
    this.ctx = null;
    this.buffer = null;
    this.source = null;
    this.playing = false;
    this.offset = 0; // time when paused
    this.startClock = 0;
    this.startOffset = 0;
    this.end = this.duration;
    this.raf = 0;
    this.listeners = new Set();
  }

  get time() {
    if (!this.playing) return this.offset;
    const t = this.startOffset + (performance.now() - this.startClock) / 1000;
    return Math.min(t, this.end);
  }

  onTime(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); }
  _emit() { const t = this.time; for (const fn of this.listeners) fn(t, this.playing); }

  _ensureContext() {
    if (this.ctx) return;
    const Ctx = globalThis.AudioContext || globalThis.webkitAudioContext;
    if (!Ctx) return;
    try {
      this.ctx = new Ctx({ sampleRate: this.sampleRate });
    } catch {
      this.ctx = new Ctx(); // the browser resamples the buffer
    }
    this.buffer = this.ctx.createBuffer(1, this.samples.length, this.sampleRate);
    this.buffer.copyToChannel(this.samples, 0);
  }

  /** Plays [{start, end}, ...] one after the other (e.g. the runs of an attributed region). */
  playSegments(segments) {
    if (!segments.length) return;
    const [first, ...rest] = segments;
    this.play(first.start, first.end, rest);
  }

  /** Plays [start, end) seconds; end defaults to the end of the audio; then `queue`. */
  play(start = this.offset, end = this.duration, queue = []) {
    this.queue = queue;
    this._stopSource();
    start = Math.min(Math.max(start, 0), this.duration);
    if (start >= this.duration - 1e-3) start = 0;
    end = Math.min(Math.max(end, start), this.duration);
    this._ensureContext();
    if (this.ctx) {
      if (this.ctx.state === "suspended") this.ctx.resume();
      this.source = this.ctx.createBufferSource();
      this.source.buffer = this.buffer;
      this.source.connect(this.ctx.destination);
      this.source.start(0, start, end - start);
    }
    this.playing = true;
    this.startOffset = start;
    this.startClock = performance.now();
    this.end = end;
    this._tick();
  }

  pause() {
    this.queue = [];
    if (!this.playing) return;
    this.offset = this.time;
    this.playing = false;
    this._stopSource();
    cancelAnimationFrame(this.raf);
    this._emit();
  }

  toggle() { if (this.playing) this.pause(); else this.play(this.offset, this.duration, []); }

  seek(t) {
    t = Math.min(Math.max(t, 0), this.duration);
    if (this.playing) this.play(t, this.duration, []);
    else { this.offset = t; this._emit(); }
  }

  _tick = () => {
    if (!this.playing) return;
    if (this.time >= this.end) {
      if (this.queue?.length) {
        this.playSegments(this.queue);
        return;
      }
      this.offset = this.end;
      this.playing = false;
      this._stopSource();
      this._emit();
      return;
    }
    this._emit();
    this.raf = requestAnimationFrame(this._tick);
  };

  _stopSource() {
    if (this.source) {
      try { this.source.stop(); } catch { /* already stopped */ }
      this.source.disconnect();
      this.source = null;
    }
  }

  destroy() {
    this.playing = false;
    cancelAnimationFrame(this.raf);
    this._stopSource();
    this.listeners.clear();
    if (this.ctx) this.ctx.close();
  }
}
