// Reverse lookup: which tokens rest on a time point, from the tokens x time overview.
// The overview is a row-major Uint8Array, one row per token (row maximum scaled to 255),
// nBins columns spread evenly over the audio's duration.

export function binOfTime(t, duration, nBins) {
  const b = Math.floor((t / duration) * nBins);
  return Math.min(Math.max(b, 0), nBins - 1);
}

/** Tokens whose attribution at time-bin `bin` is at least `threshold` of their own peak. */
export function tokensAt(overview, nTokens, nBins, bin, { threshold = 0.3 } = {}) {
  const out = [];
  const min = threshold * 255;
  for (let k = 0; k < nTokens; k++) {
    const v = overview[k * nBins + bin];
    if (v > 0 && v >= min) out.push({ token: k, weight: v / 255 });
  }
  return out.sort((a, b) => b.weight - a.weight);
}

/** The one token whose evidence is strongest under `bin` (for the playhead), or -1. */
export function tokenUnder(overview, nTokens, nBins, bin, { threshold = 0.5 } = {}) {
  let best = -1;
  let bestV = threshold * 255;
  for (let k = 0; k < nTokens; k++) {
    const v = overview[k * nBins + bin];
    if (v > 0 && v >= bestV) { best = k; bestV = v; }
  }
  return best;
}

/** Row (token) under a y pixel in an overview drawn `height` pixels tall. */
export function rowAtY(y, height, nTokens) {
  const k = Math.floor((y / height) * nTokens);
  return Math.min(Math.max(k, 0), nTokens - 1);
}
