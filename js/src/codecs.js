// Binary codecs, the JS half of leafx_widgets/_codecs.py.
// An array travels as {view, dtype, shape}: view is a DataView / ArrayBuffer / typed array
// (a Jupyter buffer), dtype an explicit numpy name. byteOffset is always respected.

export const DTYPES = {
  int8: Int8Array, uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array,
  int32: Int32Array, uint32: Uint32Array, float32: Float32Array, float64: Float64Array,
};

/** View the bytes of `data` as a typed array of `dtype`, copying only when misaligned. */
export function typedArray(dtype, data) {
  const Type = DTYPES[dtype];
  if (!Type) throw new Error(`unsupported dtype ${JSON.stringify(dtype)}`);
  let buffer, byteOffset, byteLength;
  if (data instanceof ArrayBuffer) {
    [buffer, byteOffset, byteLength] = [data, 0, data.byteLength];
  } else if (ArrayBuffer.isView(data)) {
    [buffer, byteOffset, byteLength] = [data.buffer, data.byteOffset, data.byteLength];
  } else {
    throw new Error("expected an ArrayBuffer, DataView or typed array");
  }
  if (byteLength % Type.BYTES_PER_ELEMENT !== 0) {
    throw new Error(`${byteLength} bytes is not a whole number of ${dtype}`);
  }
  if (byteOffset % Type.BYTES_PER_ELEMENT !== 0) {
    const copy = new Uint8Array(byteLength);
    copy.set(new Uint8Array(buffer, byteOffset, byteLength));
    [buffer, byteOffset] = [copy.buffer, 0];
  }
  return new Type(buffer, byteOffset, byteLength / Type.BYTES_PER_ELEMENT);
}

/** {view, dtype, shape} -> {data: TypedArray, shape}; checks the element count. */
export function decodeArray({ view, dtype, shape }) {
  const data = typedArray(dtype, view);
  const n = shape.reduce((a, b) => a * b, 1);
  if (n !== data.length) throw new Error(`shape ${shape} needs ${n} values, got ${data.length}`);
  return { data, shape };
}

/** int16 PCM -> float32 in [-1, 1). */
export function pcm16ToFloat32(pcm, out = new Float32Array(pcm.length), offset = 0) {
  for (let i = 0; i < pcm.length; i++) out[offset + i] = pcm[i] / 32768;
  return out;
}

/** uint8 codes -> float32 values in [lo, hi] (inverse of _codecs.quantize_uint8). */
export function dequantize(codes, lo, hi) {
  const scale = (hi - lo) / 255;
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) out[i] = lo + codes[i] * scale;
  return out;
}

/** Writes chunks (typed arrays) into one preallocated array as they arrive. */
export class ChunkAssembler {
  constructor(Type, total) {
    this.data = new Type(total);
    this.received = 0;
    this.total = total;
  }
  put(offset, chunk) {
    if (offset < 0 || offset + chunk.length > this.total) {
      throw new Error(`chunk [${offset}, ${offset + chunk.length}) outside [0, ${this.total})`);
    }
    this.data.set(chunk, offset);
    this.received += chunk.length;
    return this.received >= this.total;
  }
}

/** base64 -> Uint8Array (standalone HTML embeds its arrays this way). */
export function base64ToBytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
