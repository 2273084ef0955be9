// A recording decoded while the view is open (pure, unit-tested): the kernel sends each window's
// tokens, words and segments as {type: "tokens", token0, tokens, word0, ...} (widget/decoding.py).

/**
 * Puts items[i] at list[start + i] where that index is new (a repeated message adds nothing).
 * Returns how many were added, or -1 when `start` lies past the end of `list` (items are missing
 * in between: the view asks for the transcript again).
 */
export function appendFrom(list, start, items) {
  if (start > list.length) return -1;
  const fresh = items.slice(list.length - start);
  for (const item of fresh) list.push(item);
  return fresh.length;
}

/** Seconds as m:ss (h:mm:ss from an hour on), for the decoding indicator. */
export function fmtClock(t) {
  const s = Math.max(0, Math.floor(t + 1e-6));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

/** What the decoding indicator shows: {visible, text, fraction}. Hidden once every window is decoded. */
export function decodingStatus(decodedS, durationS, { complete = false, stopped = false } = {}) {
  const fraction = durationS > 0 ? Math.min(Math.max(decodedS / durationS, 0), 1) : 1;
  if (complete) return { visible: false, text: "", fraction: 1 };
  const text = stopped ? `decoding stopped at ${fmtClock(decodedS)} / ${fmtClock(durationS)}`
    : `decoding ${fmtClock(decodedS)} / ${fmtClock(durationS)}`;
  return { visible: true, text, fraction };
}
