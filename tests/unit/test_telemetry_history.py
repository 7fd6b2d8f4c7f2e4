"""The bounded GPU history: the raw ring, the one-minute means, absent readings."""

from __future__ import annotations

import math

from controlplane.telemetry.history import History

NAN = math.nan
KEY = ("lab/lab/n1", "GPU-1")


def test_a_window_averages_the_readings_inside_it() -> None:
    history = History(raw_slots=10)
    for second in range(5):
        history.record(KEY, 1000.0 + second, (10.0 * second, 300.0))
    assert history.window(KEY, 2.5, now=1004.0) == {
        "gpu_utilization_percent": 30.0,  # seconds 2, 3 and 4
        "power_watts": 300.0,
    }
    assert history.window(KEY, 10, now=2000.0) == {}  # nothing that recent
    assert history.window(("x", "y"), 10, now=1004.0) == {}


def test_the_raw_ring_keeps_only_its_last_slots() -> None:
    history = History(raw_slots=3)
    for second in range(10):
        history.record(KEY, 100.0 + second, (float(second), NAN))
    means = history.window(KEY, 1000, now=110.0)
    assert means == {"gpu_utilization_percent": 8.0}  # 7, 8, 9; power never given


def test_each_closed_minute_is_kept_as_its_mean() -> None:
    history = History(minute_slots=2)
    for minute in range(4):
        for second in (0, 30):
            history.record(KEY, minute * 60 + second, (float(minute * 10 + second), NAN))
    history.record(KEY, 4 * 60, (0.0, NAN))  # closes minute 3
    kept = history.minutes(KEY)
    assert [minute for minute, _ in kept] == [2, 3]  # the oldest fell out of the ring
    assert kept[-1][1] == {"gpu_utilization_percent": 45.0}  # (30 + 60) / 2


def test_a_forgotten_gpu_leaves_no_trace_and_others_keep_theirs() -> None:
    history = History()
    other = ("lab/lab/n1", "GPU-2")
    history.record(KEY, 10.0, (50.0, 100.0))
    history.record(other, 10.0, (70.0, 200.0))
    history.forget(KEY)
    assert len(history) == 1 and history.window(KEY, 60, now=10.0) == {}
    assert history.window(other, 60, now=10.0) == {
        "gpu_utilization_percent": 70.0,
        "power_watts": 200.0,
    }
    history.record(KEY, 20.0, (5.0, NAN))  # comes back with a fresh row
    assert history.window(KEY, 60, now=20.0) == {"gpu_utilization_percent": 5.0}


def test_rows_span_blocks_and_a_forgotten_row_is_refilled_from_the_last_block() -> None:
    history = History(block_rows=4)
    keys = [("node", f"GPU-{n}") for n in range(10)]  # three blocks: 4 + 4 + 2
    for n, key in enumerate(keys):
        history.record(key, 5.0, (float(n), 10.0 * n))
    history.forget(keys[1])  # GPU-9 (last row, third block) moves into the first block
    history.forget(keys[9])
    assert len(history) == 8
    for n, key in enumerate(keys):
        expected = (
            {} if n in (1, 9) else {"gpu_utilization_percent": float(n), "power_watts": 10.0 * n}
        )
        assert history.window(key, 60, now=5.0) == expected, key
    history.record(("node", "GPU-new"), 6.0, (1.0, NAN))  # takes the row the last one left
    assert history.window(("node", "GPU-new"), 60, now=6.0) == {"gpu_utilization_percent": 1.0}
    assert history.window(keys[8], 60, now=6.0) == {
        "gpu_utilization_percent": 8.0,
        "power_watts": 80.0,
    }


def test_rows_grow_past_the_first_allocation() -> None:
    history = History()
    for n in range(200):
        history.record(("node", f"GPU-{n}"), 5.0, (float(n), NAN))
    assert history.window(("node", "GPU-199"), 60, now=5.0) == {"gpu_utilization_percent": 199.0}
