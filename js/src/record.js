// The microphone in the page: getUserMedia, the samples tapped by an AudioWorklet (a
// ScriptProcessor where worklets cannot load, e.g. a page whose policy forbids blob: scripts),
// resampled to 16 kHz mono and cut into chunks as they come (resample.js). A MediaRecorder is no
// fallback: it hands over compressed audio that would have to be decoded again before resampling.
import {
  StreamResampler, TakeChunker, TAKE_RATE, rms, mixToMono, micErrorMessage, insecureMessage, noMicApiMessage,
} from "./resample.js";

export const CHUNK_SAMPLES = 8000; // 0.5 s of 16 kHz float32 a message: 32 kB

// posts the mono samples in blocks of 2048 frames (16 render quanta); "flush" posts what is left
const WORKLET = `
class LeafxTap extends AudioWorkletProcessor {
  constructor() {
    super();
    this.buf = new Float32Array(2048);
    this.n = 0;
    this.port.onmessage = () => { this.port.postMessage({ last: true, block: this.buf.slice(0, this.n) }); this.n = 0; };
  }
  process(inputs) {
    const ch = inputs[0];
    if (ch && ch.length) {
      for (let i = 0; i < ch[0].length; i++) {
        let s = 0;
        for (let c = 0; c < ch.length; c++) s += ch[c][i];
        this.buf[this.n++] = s / ch.length;
        if (this.n === this.buf.length) {
          this.port.postMessage({ block: this.buf });
          this.buf = new Float32Array(2048);
          this.n = 0;
        }
      }
    }
    return true;
  }
}
registerProcessor("leafx-tap", LeafxTap);
`;

/** A failure to say in the widget, as is. */
export class RecordError extends Error {}

/**
 * One take. `onChunk({offset, data})` gets 16 kHz float32 chunks in order, `onLevel(rms, seconds)`
 * the level and length, `onLimit()` is called once the take reaches `maxSeconds` (stop then).
 */
export class Recorder {
  constructor({ maxSeconds = 60, onChunk = () => {}, onLevel = () => {}, onLimit = () => {} } = {}) {
    Object.assign(this, { maxSeconds, onChunk, onLevel, onLimit });
    this.stopped = false;
    this.limited = false;
  }

  async start() {
    const g = globalThis;
    if (g.isSecureContext === false) throw new RecordError(insecureMessage(g.location?.host ?? ""));
    const md = g.navigator?.mediaDevices;
    if (!md?.getUserMedia) throw new RecordError(noMicApiMessage());
    try {
      // the raw signal: the browser's speech processing would change what the model hears
      this.stream = await md.getUserMedia({ audio: {
        channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
    } catch (err) {
      throw new RecordError(micErrorMessage(err, { secure: true }));
    }
    try {
      const Ctx = g.AudioContext || g.webkitAudioContext;
      this.ctx = new Ctx();
      if (this.ctx.state === "suspended") await this.ctx.resume();
      this.rate = this.ctx.sampleRate;
      this.resampler = new StreamResampler(this.rate, TAKE_RATE);
      this.chunker = new TakeChunker(CHUNK_SAMPLES, Math.round(this.maxSeconds * TAKE_RATE));
      this.source = this.ctx.createMediaStreamSource(this.stream);
      this.sink = this.ctx.createGain(); // silent: the graph must reach the destination to be pulled
      this.sink.gain.value = 0;
      this.sink.connect(this.ctx.destination);
      try {
        await this._worklet();
      } catch {
        this._scriptProcessor();
      }
    } catch (err) {
      this._release();
      throw err instanceof RecordError ? err : new RecordError(`Recording failed: ${err.name ?? "error"}: ${err.message ?? err}`);
    }
  }

  async _worklet() {
    const url = URL.createObjectURL(new Blob([WORKLET], { type: "text/javascript" }));
    try {
      await this.ctx.audioWorklet.addModule(url);
    } finally {
      URL.revokeObjectURL(url);
    }
    this.node = new AudioWorkletNode(this.ctx, "leafx-tap", { numberOfOutputs: 1 });
    this.node.port.onmessage = (e) => {
      this._block(e.data.block);
      if (e.data.last) this._flushed?.();
    };
    this.source.connect(this.node).connect(this.sink);
    this.via = "AudioWorklet";
  }

  _scriptProcessor() {
    this.node = this.ctx.createScriptProcessor(4096, 1, 1);
    this.node.onaudioprocess = (e) => {
      const b = e.inputBuffer;
      this._block(mixToMono(Array.from({ length: b.numberOfChannels }, (_, c) => b.getChannelData(c))));
    };
    this.source.connect(this.node).connect(this.sink);
    this.via = "ScriptProcessor";
  }

  _block(block) {
    if (this.stopped || this.limited || !block?.length) return;
    const { chunks, full } = this.chunker.push(this.resampler.push(block));
    for (const c of chunks) this.onChunk(c);
    this.onLevel(rms(block), this.chunker.total / TAKE_RATE);
    if (full) {
      this.limited = true;
      this.onLimit();
    }
  }

  /** Stops capturing; the last chunks are sent. Returns the take's length in 16 kHz samples. */
  async stop() {
    if (this.stopped) return this.chunker?.total ?? 0;
    if (this.node?.port) { // the worklet's last partial block
      await new Promise((resolve) => {
        this._flushed = resolve;
        this.node.port.postMessage("flush");
        setTimeout(resolve, 500);
      });
    }
    this.stopped = true;
    if (this.chunker && !this.limited) this.chunker.push(this.resampler.flush()).chunks.forEach(this.onChunk);
    for (const c of this.chunker?.flush() ?? []) this.onChunk(c);
    this._release();
    return this.chunker?.total ?? 0;
  }

  /** Gives the microphone back (the browser's recording indicator goes off). */
  _release() {
    this.stopped = true;
    try { this.source?.disconnect(); this.node?.disconnect(); } catch { /* already gone */ }
    for (const t of this.stream?.getTracks() ?? []) t.stop();
    this.ctx?.close().catch(() => {});
  }
}
