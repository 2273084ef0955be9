// Colour tables for canvases (pure). LUTs are Uint8ClampedArray(256 * 4), RGBA.

const MAGMA = [
  [0, 0, 4], [28, 16, 68], [79, 18, 123], [129, 37, 129],
  [181, 54, 122], [229, 80, 100], [251, 135, 97], [254, 194, 135], [252, 253, 191],
];
const VIRIDIS = [
  [68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [110, 206, 88], [181, 222, 43], [253, 231, 37],
];

/** 256-entry RGBA lookup table interpolated linearly between control colours. */
export function makeLut(stops = VIRIDIS, alpha = (i) => 255) {
  const lut = new Uint8ClampedArray(256 * 4);
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (stops.length - 1);
    const j = Math.min(Math.floor(x), stops.length - 2);
    const f = x - j;
    for (let c = 0; c < 3; c++) lut[i * 4 + c] = stops[j][c] * (1 - f) + stops[j + 1][c] * f;
    lut[i * 4 + 3] = alpha(i);
  }
  return lut;
}

export const SPECTROGRAM_LUT = makeLut(MAGMA);
/** Overview heat: transparent at zero, opaque towards the peak. */
export const HEAT_LUT = makeLut(VIRIDIS, (i) => (i === 0 ? 0 : Math.min(255, 60 + i)));

/** Background alpha (0..1) for a token of log-probability `logprob`: unsure = stronger. */
export function confidenceAlpha(logprob) {
  const p = Math.exp(Math.min(logprob, 0));
  return Math.round((1 - p) * 0.75 * 100) / 100;
}

/** "rgba(...)" for a signed value in [-1, 1]: blue for negative, orange for positive. */
export function divergingColor(v, alpha = 0.85) {
  const a = Math.min(Math.abs(v), 1);
  return v >= 0 ? `rgba(230, 120, 20, ${a * alpha})` : `rgba(40, 110, 220, ${a * alpha})`;
}
