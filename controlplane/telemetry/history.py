"""Recent history of every GPU, bounded: the last readings at full rate in a
ring, and one-minute means for the last hour in a second ring (downsampled as
each minute closes). Columnar numpy arrays, a row per GPU, so the memory is a
fixed few kilobytes per GPU however long the control plane runs.

Two series are kept: GPU utilisation and power. NaN marks a reading the GPU
did not give (absent stays absent, never 0).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

SERIES = ("gpu_utilization_percent", "power_watts")
RAW_SLOTS = 60  # one minute at the agents' default 1 Hz
MINUTE_SLOTS = 60  # one hour of one-minute means
_NAN = float("nan")
Floats = npt.NDArray[np.float32]


class History:
    def __init__(self, raw_slots: int = RAW_SLOTS, minute_slots: int = MINUTE_SLOTS) -> None:
        self.raw_slots = raw_slots
        self.minute_slots = minute_slots
        self._rows: dict[tuple[str, str], int] = {}
        self._capacity = 0
        width = len(SERIES)
        self._raw = np.empty((0, raw_slots, width), np.float32)
        self._raw_time = np.empty((0, raw_slots), np.float64)
        self._raw_next = np.empty(0, np.int64)
        self._minutes = np.empty((0, minute_slots, width), np.float32)
        self._minute_of = np.empty((0, minute_slots), np.int64)
        self._open_minute = np.empty(0, np.int64)
        self._sum = np.empty((0, width), np.float64)
        self._count = np.empty((0, width), np.int64)

    def __len__(self) -> int:
        return len(self._rows)

    def _row(self, key: tuple[str, str]) -> int:
        row = self._rows.get(key)
        if row is None:
            row = len(self._rows)
            if row >= self._capacity:
                self._grow(max(64, self._capacity * 2))
            self._rows[key] = row
        return row

    def _grow(self, capacity: int) -> None:
        extra = capacity - self._capacity
        width = len(SERIES)

        def more(array: npt.NDArray[Any], shape: tuple[int, ...], fill: float) -> npt.NDArray[Any]:
            return np.concatenate([array, np.full((extra, *shape), fill, array.dtype)])

        self._raw = more(self._raw, (self.raw_slots, width), _NAN)
        self._raw_time = more(self._raw_time, (self.raw_slots,), -math.inf)
        self._raw_next = more(self._raw_next, (), 0)
        self._minutes = more(self._minutes, (self.minute_slots, width), _NAN)
        self._minute_of = more(self._minute_of, (self.minute_slots,), -1)
        self._open_minute = more(self._open_minute, (), -1)
        self._sum = more(self._sum, (width,), 0)
        self._count = more(self._count, (width,), 0)
        self._capacity = capacity

    def record(self, key: tuple[str, str], when: float, values: tuple[float, ...]) -> None:
        """One reading at unix time `when`; NaN for a series the GPU did not give."""
        # Scalar stores: for two series they cost less than building arrays.
        row = self._row(key)
        slot = int(self._raw_next[row])
        raw, total, count = self._raw, self._sum, self._count
        self._raw_time[row, slot] = when
        self._raw_next[row] = (slot + 1) % self.raw_slots
        minute = int(when // 60)
        if minute != self._open_minute[row]:
            self._close_minute(row)
            self._open_minute[row] = minute
        for index, value in enumerate(values):
            raw[row, slot, index] = value
            if not math.isnan(value):
                total[row, index] += value
                count[row, index] += 1

    def _close_minute(self, row: int) -> None:
        minute = self._open_minute[row]
        if minute < 0:
            return
        count = self._count[row]
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(count > 0, self._sum[row] / np.maximum(count, 1), np.nan)
        slot = minute % self.minute_slots
        self._minutes[row, slot] = means
        self._minute_of[row, slot] = minute
        self._sum[row] = 0
        self._count[row] = 0

    def window(self, key: tuple[str, str], seconds: float, now: float) -> dict[str, float]:
        """Means of each series over the readings of the last `seconds` (at most the raw
        ring); a series with no reading in the window is left out."""
        row = self._rows.get(key)
        if row is None:
            return {}
        recent = self._raw_time[row] >= now - seconds
        if not recent.any():
            return {}
        values = self._raw[row, recent]
        out = {}
        for index, name in enumerate(SERIES):
            column = values[:, index]
            column = column[~np.isnan(column)]
            if column.size:
                out[name] = float(column.mean())
        return out

    def minutes(self, key: tuple[str, str]) -> list[tuple[int, dict[str, float]]]:
        """(unix minute, means) of the closed minutes still kept, oldest first."""
        row = self._rows.get(key)
        if row is None:
            return []
        order = np.argsort(self._minute_of[row])
        out = []
        for slot in order:
            minute = int(self._minute_of[row, slot])
            if minute < 0:
                continue
            means = {
                name: float(self._minutes[row, slot, index])
                for index, name in enumerate(SERIES)
                if not np.isnan(self._minutes[row, slot, index])
            }
            out.append((minute, means))
        return out

    def forget(self, key: tuple[str, str]) -> None:
        """The GPU left: its row is cleared for reuse by the next new GPU."""
        row = self._rows.pop(key, None)
        if row is None:
            return
        last = len(self._rows)
        if row != last:
            # Move the last row into the hole, so rows stay dense.
            moved = next(k for k, r in self._rows.items() if r == last)
            for array in self._arrays():
                array[row] = array[last]
            self._rows[moved] = row
        self._clear(last)

    def _arrays(self) -> list[npt.NDArray[Any]]:
        return [
            self._raw,
            self._raw_time,
            self._raw_next,
            self._minutes,
            self._minute_of,
            self._open_minute,
            self._sum,
            self._count,
        ]

    def _clear(self, row: int) -> None:
        self._raw[row] = _NAN
        self._raw_time[row] = -math.inf
        self._raw_next[row] = 0
        self._minutes[row] = _NAN
        self._minute_of[row] = -1
        self._open_minute[row] = -1
        self._sum[row] = 0
        self._count[row] = 0
