"""The widget's wire protocol: one handler per browser message, and the replies' encoding.

Python owns state and computation, JS (``js/src``) owns drawing and playback. Besides the
synced traits (selection, method, playback time), the two talk in custom messages:

    browser -> kernel                          kernel -> browser
    {type: "init", stream}                     {type: "note", message}  (shown, not fatal)
                                               {type: "mel", offset_cols, n_cols, total_cols,
                                                n_mels, col_s, lo, hi}             + uint8 codes chunk
                                               {type: "peaks", block, n_blocks,
                                                total_samples}                     + int16 (min, max) pairs
                                               {type: "audio", stream, offset, n,
    {type: "audio_ack", stream}                 total}                             + int16 PCM chunk
    {type: "map", id, key, token, method,      {type: "map", id, ids, key, token, method,
     params, selected}                          start_frame, n_frames, dtype}      + float32 map
                                               {type: "progress", id, ids, key, token, method,
                                                note, expected_s}  (a slow map has started)
    {type: "cancel", ids}                      {type: "cancelled", id, ids, key, reason}
                                               {type: "error", id, ids, key, message}
    {type: "overview", method, params}         {type: "overview", key, row0, n_rows,
                                                n_tokens, n_bins}                  + uint8 rows
    {type: "transcript"}                       {type: "tokens", token0, tokens, word0, words,
                                                segment0, segments, decoded_s, duration_s,
                                                complete, stopped}  (a recording still being decoded:
                                                after each window, and all so far after "init")
    {type: "lens", id, key, token,             {type: "lens", id, ids, key, token, lens: {token, layers,
     selected}                                  logprob, rank, top}}  (``ex.logit_lens(token).to_json()``)
    {type: "patching", id, key, token,         {type: "patching", id, ids, key, token, corrupt, patching:
     corrupt, selected}                         {over, sites, effect, clean_logprob, corrupt_logprob,
                                                start_s, end_s}}  (``ex.patching(token, corrupt,
                                                over="time", n_spans=30).to_json()``)
                                               errors and cancellations as for maps ("error", "cancelled")
    {type: "contrast", id, key, token, foil,   {type: "contrast", id, ids, key, token, target, foil, delta,
     selected}                                  delta_silence, total, peak_s, start_frame, n_frames,
                                                dtype}                             + float32 signed map

Recorded takes (the page's microphone, ``take_*`` messages) are documented in ``record.py``, whose
handlers join this table.
    {type: "audit"}                            {type: "audit", state: "computing", done, total, note}
                                               {type: "audit", state: "ready", rows}
                                               {type: "audit", state: "failed", message}
                                               (the audit table, ``audit.py``: the page asks when its
                                                table or flag buttons are first used; rows, sorted by
                                                score, also after "init" when the widget has them)

While a recording is decoded (``decoding.py``), an overview grows: a later reply for the same key
has a larger ``n_tokens`` and the rows of the new tokens.

``selected`` is the token the page shows when it asks (a prefetch of a neighbour carries
the selected token, not its own). ``ids`` lists every request a reply answers: identical
requests are merged into one computation. A map reply echoes the page's own ``key``.

Keys. A map is named by ``map_key``: ``"{token}|{method}|{p1}={v1}|{p2}={v2}"`` over the
parameters the method declares, sorted by name, each value written as JavaScript's
``String(v)`` does (``tau=1``, not ``tau=1.0``). ``mapKey`` in js/src/mapstore.js builds the
same string; the HTML export stores its maps under it, and the kernel names its jobs by it.
An overview is named by ``overview_key``, the same string without the token.

The layers pane (``layers.py``) asks for the selected token's logit lens and, while the pane is open,
its patching lane. They run on the worker in the maps' lane (selected token first, newest first,
merged, dropped when the page leaves the token, stopped by "cancel") and are cached per key:
``"{token}|lens"`` and ``"{token}|patching|{corrupt}"`` (``layers_key``; ``layersKey`` in
js/src/layerstore.js), ``corrupt`` one of ``layers.CORRUPTIONS``. A model without the capability
(``meta.layers``), a token out of range or an unknown corruption get an "error" reply. NaN and
infinities in the results are sent as null.

The contrast lane (``contrast.py``) asks for ``ex.contrast(token, foil)``: the evidence for the token's
word (``target``) against ``foil`` over the token's window, frame ``start_frame + i`` worth ``map[i]``
(positive: the sound favours the word, negative: the foil), ``delta`` = log p(word) - log p(foil) on the
clip (``delta_silence`` on silence; the map adds up to about their difference, ``total``), ``peak_s``
the frame that most favours the word. It runs on the worker in the maps' lane and is cached per key
``"{token}|contrast|{foil}"`` (``contrast_key``, the foil without surrounding spaces and punctuation;
``contrastKey`` in js/src/contraststore.js). An empty foil, the word itself as foil, a token out of range or
a model without forced-text gradients (``meta.contrast`` false) get an "error" reply. The synced trait
``contrast_foils`` ({token index as a string: foil}) says which foil the lane shows for each token.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .. import _codecs
from .worker import by_key

log = logging.getLogger(__name__)

AUDIO_CHUNK_SAMPLES = 1 << 19  # 1 MB of int16 per message, well under the ~10 MB limit
MEL_CHUNK_BYTES = 1 << 21
AUDIO_WINDOW = 2  # audio chunks in flight per view
PEAK_BLOCK = 128  # samples per min/max pair of the waveform summary sent before the PCM


# ---- keys -------------------------------------------------------------------------------
def _js_str(value: Any) -> str:
    """``String(value)`` as JavaScript writes it, for keys shared with js/src/mapstore.js."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def overview_key(method: str, params: Mapping[str, Any]) -> str:
    """``"{method}|{p}={v}|..."``: a method at its parameters (see the module docstring)."""
    return f"{method}|" + "|".join(f"{k}={_js_str(params[k])}" for k in sorted(params))


def map_key(token: int, method: str, params: Mapping[str, Any]) -> str:
    """The cache key the browser uses for a map (``mapKey`` in js/src/mapstore.js)."""
    return f"{token}|{overview_key(method, params)}"


# ---- reading a request ------------------------------------------------------------------
def token_index(value, n: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer token index, got {value!r}")
    if not 0 <= value < n:
        raise ValueError(f"{name} {value} is out of range: this explanation has {n} tokens (0..{n - 1})")
    return value


def token_request(widget, content: dict) -> tuple:
    """(id, key, token, selected) of a request about one token of the take shown, each checked."""
    req_id, key = request_ids(content)
    widget._need_take()
    n = len(widget.explanation.tokens)
    token = token_index(content.get("token"), n, "token")
    return req_id, key, token, token_index(content.get("selected", token), n, "selected")


def request_ids(content: dict):
    req_id, key = content.get("id"), content.get("key")
    for name, value in (("id", req_id), ("key", key)):
        if not (value is None or isinstance(value, str)):
            raise ValueError(f"{name} must be a string, got {value!r}")
    return req_id, key


def page_params(content: dict) -> dict:
    params = content.get("params")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ValueError(f"params must be an object of method parameters, got {params!r}")
    return params


# ---- replies: (content, buffers) ----------------------------------------------------------
Reply = tuple[dict, list]


def _bytes(a: np.ndarray) -> list:
    return [memoryview(np.ascontiguousarray(a)).cast("B")]


def map_replies(requesters: Mapping, token: int, method: str, params: dict, start_frame: int,
                arr: np.ndarray) -> list[Reply]:
    return [({"type": "map", "id": ids[0], "ids": ids, "key": key, "token": token, "method": method,
              "params": params, "start_frame": int(start_frame), "n_frames": int(arr.size), "dtype": "float32"},
             _bytes(arr)) for key, ids in by_key(requesters).items()]


def progress_replies(requesters: Mapping, token: int, method: str, note: str, expected_s) -> list[Reply]:
    return [({"type": "progress", "id": ids[0], "ids": ids, "key": key, "token": token, "method": method,
              "note": note, "expected_s": expected_s}, []) for key, ids in by_key(requesters).items()]


def cancelled_replies(requesters: Mapping, reason: str) -> list[Reply]:
    return [({"type": "cancelled", "id": ids[0], "ids": ids, "key": key, "reason": reason}, [])
            for key, ids in by_key(requesters).items()]


def error_reply(req_id, key, exc: BaseException, ids: list | None = None) -> Reply:
    if not isinstance(exc, (ValueError, IndexError, KeyError, TypeError)):
        log.warning("leafx widget request failed: %s", "".join(traceback.format_exception(exc)))
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return ({"type": "error", "id": req_id, "ids": ids if ids is not None else [req_id], "key": key,
             "message": f"{type(exc).__name__}: {message}"}, [])


def overview_reply(key: str, rows: np.ndarray, row0: int, n_tokens: int, n_bins: int) -> Reply:
    return ({"type": "overview", "key": key, "row0": row0, "n_rows": int(rows.shape[0]),
             "n_tokens": n_tokens, "n_bins": n_bins}, _bytes(rows))


def audio_payload(ex) -> tuple[dict, list[str]]:
    """int16 PCM, its min/max summary and uint8 log-Mel codes (time-major), and notes for the page."""
    notes = []
    if ex.audio is None:  # e.g. Explanation.from_json without its audio file
        notes.append("This explanation was read from JSON without its recording (pass "
                     "audio= or load_audio=True to Explanation.from_json): silence is shown instead.")
        audio = np.zeros(int(round(ex.duration_s * ex.sample_rate)), dtype=np.float32)
    else:
        audio = ex.audio  # an array, or a long file's spilled samples: converted block by block
    pcm = _codecs.to_pcm16(audio)  # kept whole for playback and export: 2 bytes a sample, half the float32
    try:
        mel = np.asarray(ex.log_mel(), dtype=np.float32)  # shape = (n_mels, n_cols)
    except ValueError as err:  # no model features, e.g. read from JSON
        notes.append(f"No spectrogram: {err}")
        mel = ex.blank_log_mel()
    codes, lo, hi = _codecs.quantize_uint8(mel.T)  # shape = (n_cols, n_mels)
    n_cols = codes.shape[0]
    payload = {
        "pcm": pcm, "peaks": _codecs.minmax_peaks(pcm, PEAK_BLOCK),
        "codes": np.ascontiguousarray(codes), "lo": lo, "hi": hi,
        "n_mels": int(mel.shape[0]), "n_cols": n_cols,
        "col_s": float(ex.frame_s) * ex.n_frames / max(n_cols, 1),
    }
    return payload, notes


def mel_replies(p: dict) -> list[Reply]:
    codes, n_mels = p["codes"], p["n_mels"]
    cols_per_chunk = max(1, MEL_CHUNK_BYTES // max(n_mels, 1))
    return [({"type": "mel", "offset_cols": start, "n_cols": stop - start, "total_cols": p["n_cols"],
              "n_mels": n_mels, "col_s": p["col_s"], "lo": p["lo"], "hi": p["hi"]}, _bytes(codes[start:stop]))
            for start, stop in _codecs.chunk_ranges(max(p["n_cols"], 1), cols_per_chunk)]


def peaks_reply(p: dict) -> Reply:
    return ({"type": "peaks", "block": PEAK_BLOCK, "n_blocks": int(p["peaks"].shape[0]),
             "total_samples": int(p["pcm"].size)}, _bytes(p["peaks"]))


# ---- handlers: message type -> handler(widget, content) ----------------------------------
HANDLERS: dict[str, Callable[[Any, dict], None]] = {}


def handles(kind: str, *, buffers: bool = False):
    """Registers ``handler(widget, content)``, or ``handler(widget, content, buffers)`` for a message
    that carries binary buffers (a recorded take's chunks, ``record.py``)."""
    def register(fn):
        fn.wants_buffers = buffers
        HANDLERS[kind] = fn
        return fn
    return register


def dispatch(widget, content, buffers=()) -> None:
    """Runs the handler of one browser message; a failure is replied as an error message."""
    kind = content.get("type") if isinstance(content, dict) else None
    try:
        handler = HANDLERS.get(kind)
        if handler is None:
            raise ValueError(f"unknown message type {kind!r}")
        if getattr(handler, "wants_buffers", False):
            handler(widget, content, list(buffers or ()))
        else:
            handler(widget, content)
    except Exception as exc:  # reply instead of dying silently in the kernel log
        widget._reply(error_reply(content.get("id") if isinstance(content, dict) else None,
                                  content.get("key") if isinstance(content, dict) else None, exc))


@handles("init")
def on_init(widget, content: dict) -> None:
    """Spectrogram and waveform summary first (the view draws), then the PCM for playback."""
    p, notes = widget._audio_and_mel()
    for note in notes:
        widget._reply(({"type": "note", "message": note}, []))
    for reply in mel_replies(p):
        widget._reply(reply)
    widget._reply(peaks_reply(p))
    if widget._decoding is not None:  # the transcript so far, before the PCM
        widget._decoding.catch_up()
    widget._audit.catch_up()  # the flags, when the widget has an audit
    # The PCM follows with flow control: AUDIO_WINDOW chunks in flight, the next one sent
    # when the browser acknowledges one, so map replies are not queued behind 19 MB.
    stream = str(content.get("stream", ""))
    widget._streams[stream] = 0
    for _ in range(AUDIO_WINDOW):
        _send_audio_chunk(widget, stream)


@handles("transcript")
def on_transcript(widget, content: dict) -> None:
    """A view missed a window's message (it opened meanwhile): everything decoded so far, again."""
    if widget._decoding is not None:
        widget._decoding.catch_up()


@handles("audit")
def on_audit(widget, content: dict) -> None:
    """The page opened its audit table: the rows, computed on the worker first when there are none."""
    widget._audit.request()


@handles("audio_ack")
def on_audio_ack(widget, content: dict) -> None:
    _send_audio_chunk(widget, str(content.get("stream", "")))


def _send_audio_chunk(widget, stream: str) -> None:
    pcm = widget._audio_and_mel()[0]["pcm"]
    start, total = widget._streams.get(stream), int(pcm.size)
    if start is None or (start >= total and total > 0):
        widget._streams.pop(stream, None)
        return
    stop = min(start + AUDIO_CHUNK_SAMPLES, total)
    widget._streams[stream] = stop if total else 1
    widget._reply(({"type": "audio", "stream": stream, "offset": start, "n": stop - start, "total": total},
                   _bytes(pcm[start:stop])))


@handles("map")
def on_map(widget, content: dict) -> None:
    req_id, key, token, selection = token_request(widget, content)
    method = content.get("method")
    params = widget.method_params(method, page_params(content))
    widget._maps.request(req_id, key, token, method, params, selection)


@handles("cancel")
def on_cancel(widget, content: dict) -> None:
    """The page's cancel control: forget these requests (all map requests when ``ids`` is absent)."""
    ids = content.get("ids")
    if ids is not None and not (isinstance(ids, list) and all(i is None or isinstance(i, str) for i in ids)):
        raise ValueError(f"cancel ids must be a list of request ids, got {ids!r}")
    widget._maps.cancel(ids)


@handles("lens")
@handles("patching")
def on_layers(widget, content: dict) -> None:
    """The layers pane: the selected token's logit lens, or its patching lane (``layers.py``)."""
    req_id, key, token, selection = token_request(widget, content)
    widget._layers.request(content["type"], req_id, key, token, content.get("corrupt"), selection)


@handles("contrast")
def on_contrast(widget, content: dict) -> None:
    """The contrast lane: the selected token's word against the foil the user typed (``contrast.py``)."""
    req_id, key, token, selection = token_request(widget, content)
    widget._contrasts.request(req_id, key, token, content.get("foil"), selection)


@handles("overview")
def on_overview(widget, content: dict) -> None:
    method = content.get("method") or widget.default_method
    widget._maps.request_overview(method, widget.method_params(method, page_params(content)))
