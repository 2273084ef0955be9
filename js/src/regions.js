// Region selection on attribution maps and word spans (pure, unit-tested).

/**
 * The fewest frames holding at least `frac` of the map's mass, merged into runs.
 * map: Float32Array over frames [startFrame, startFrame + map.length); gaps of up to
 * `maxGap` frames between chosen frames are bridged. Returns [{start, end}] (end exclusive).
 */
export function massRegions(map, { frac = 0.5, startFrame = 0, maxGap = 2 } = {}) {
  const n = map.length;
  if (n === 0) return [];
  let total = 0;
  for (let i = 0; i < n; i++) total += Math.max(map[i], 0);
  if (!(total > 0)) return [];
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => map[b] - map[a]);
  const chosen = new Uint8Array(n);
  let mass = 0;
  for (const i of order) {
    chosen[i] = 1;
    mass += Math.max(map[i], 0);
    if (mass >= frac * total - 1e-12) break;
  }
  const runs = [];
  for (let i = 0; i < n; i++) {
    if (!chosen[i]) continue;
    const last = runs[runs.length - 1];
    if (last && i - last.end <= maxGap) last.end = i + 1;
    else runs.push({ start: i, end: i + 1 });
  }
  return runs.map((r) => ({ start: r.start + startFrame, end: r.end + startFrame }));
}

/**
 * Word spans in seconds from word peak times: boundaries halfway between neighbouring
 * peaks, at most `maxHalf` seconds either side of a peak, clipped to [0, duration].
 */
export function wordSpans(peaks, duration, { maxHalf = 0.4 } = {}) {
  return peaks.map((p, i) => {
    const prev = i > 0 ? (peaks[i - 1] + p) / 2 : -Infinity;
    const next = i < peaks.length - 1 ? (p + peaks[i + 1]) / 2 : Infinity;
    const start = Math.max(0, prev, p - maxHalf);
    const end = Math.min(duration, next, p + maxHalf);
    return { start, end: Math.max(start, end) };
  });
}

/** Index of the span holding time t, or -1. */
export function spanAt(spans, t) {
  for (let i = 0; i < spans.length; i++) {
    if (t >= spans[i].start && t < spans[i].end) return i;
  }
  return -1;
}
