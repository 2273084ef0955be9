"""The widget protocol under load, on the real tiny.en explanation of the bundled clip: 1,000 rapid
map requests across tokens for a slow method (the scenario of
``python -m leafx_widgets.bench.widget_speed --load``), and a real perturbation baseline stopped
from the page."""

from __future__ import annotations

import time

from leafx_widgets.bench.widget_speed import protocol_load, unit_method
from leafx_widgets.methods import METHODS
from leafx_widgets.widget import LeafXWidget


def test_a_thousand_rapid_requests(sample_explanation, monkeypatch):
    method = unit_method()  # 10 x 30 ms per map, each unit one torch layer call
    monkeypatch.setitem(METHODS, method.name, method)
    w = LeafXWidget(sample_explanation)
    try:
        fig = protocol_load(w, method.name, n_requests=1000)
    finally:
        w.close()
    print(f"\n[load] {fig}")
    # the newest request waits for at most the running unit of stale work, then its own map
    assert fig["newest_answer_s"] <= 2 * fig["single_map_s"], fig
    # nothing lost: every request gets exactly one reply (its map, or 'cancelled' once the user moved on)
    assert fig["answered_once"] == 1000 and fig["maps_sent"] + fig["cancelled"] == 1000, fig
    # stale work is not done: the newest map, and at most a couple that finished while requests came in
    assert 1 <= fig["maps_sent"] <= 3, fig
    # memory: the queue holds one job per selection, each reply a few hundred bytes of JSON and a
    # reference to a cached map: 1,000 requests stay far below 10 MB of Python allocations
    # (a leak of one 1.4 KB map copy or closure per request would already show), and resident size
    # grows less than 64 MB (torch's allocator keeps a few MB of the maps' working memory)
    assert fig["traced_peak_mb"] < 10, fig
    assert fig["rss_growth_mb"] is None or fig["rss_growth_mb"] < 64, fig


def test_a_real_slow_baseline_stops_when_the_page_cancels(sample_explanation):
    """Occlusion on tiny.en takes tens of seconds here; cancelled, it stops at the next model layer."""
    w = LeafXWidget(sample_explanation)
    sent = []
    w.send = lambda content, buffers=None: sent.append((content, time.perf_counter()))
    try:
        w._on_custom_msg(w, {"type": "map", "id": "occ", "key": "k", "token": 2, "method": "occlusion",
                             "params": {}}, [])
        t0 = time.perf_counter()
        while not any(c["type"] == "progress" for c, _ in sent):
            assert time.perf_counter() - t0 < 30
            time.sleep(0.01)
        time.sleep(1.0)  # inside the model by now
        t0 = time.perf_counter()
        w._on_custom_msg(w, {"type": "cancel", "ids": ["occ"]}, [])
        w.wait_idle(timeout=20)
        stopped_s = time.perf_counter() - t0
    finally:
        w.close()
    kinds = [c["type"] for c, _ in sent]
    assert kinds == ["progress", "cancelled"], kinds
    assert stopped_s < 3.0, f"the computation ran on for {stopped_s:.1f} s after the cancel"
    assert not any(k[0] == "occlusion" for k in sample_explanation._cache)
