"""Recent history of every GPU, bounded: the last readings at full rate in a
ring, and one-minute means for the last hour in a second ring (downsampled as
each minute closes). Columnar numpy arrays, a row per GPU, so the memory is a
fixed two kilobytes per GPU however long the control plane runs.

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
BLOCK_ROWS = 1024  # GPUs per block of columns: about 2 MB
_NAN = float("nan")
Floats = npt.NDArray[np.float32]


class _Block:
    """The columns of BLOCK_ROWS GPUs. Blocks are added as GPUs come, never copied, so
    growing to the next GPU never stalls ingest the way doubling one big array would."""

    def __init__(self, rows: int, raw_slots: int, minute_slots: int) -> None:
        width = len(SERIES)
        self.raw = np.full((rows, raw_slots, width), _NAN, np.float32)
        self.raw_time = np.full((rows, raw_slots), -math.inf, np.float64)
        self.raw_next = np.zeros(rows, np.int64)
        self.minutes = np.full((rows, minute_slots, width), _NAN, np.float32)
        self.minute_of = np.full((rows, minute_slots), -1, np.int64)
        self.open_minute = np.full(rows, -1, np.int64)
        self.sum = np.zeros((rows, width), np.float64)
        self.count = np.zeros((rows, width), np.int64)

    def clear(self, row: int) -> None:
        self.raw[row] = _NAN
        self.raw_time[row] = -math.inf
        self.raw_next[row] = 0
        self.minutes[row] = _NAN
        self.minute_of[row] = -1
        self.open_minute[row] = -1
        self.sum[row] = 0
        self.count[row] = 0

    def arrays(self) -> list[npt.NDArray[Any]]:
        return [
            self.raw,
            self.raw_time,
            self.raw_next,
            self.minutes,
            self.minute_of,
            self.open_minute,
            self.sum,
            self.count,
        ]


class History:
    def __init__(
        self,
        raw_slots: int = RAW_SLOTS,
        minute_slots: int = MINUTE_SLOTS,
        block_rows: int = BLOCK_ROWS,
    ) -> None:
        self.raw_slots = raw_slots
        self.minute_slots = minute_slots
        self.block_rows = block_rows
        self._rows: dict[tuple[str, str], int] = {}
        self._keys: list[tuple[str, str]] = []  # by row: rows stay dense
        self._blocks: list[_Block] = []

    def __len__(self) -> int:
        return len(self._rows)

    def _row(self, key: tuple[str, str]) -> int:
        row = self._rows.get(key)
        if row is None:
            row = len(self._keys)
            if row == len(self._blocks) * self.block_rows:
                self._blocks.append(_Block(self.block_rows, self.raw_slots, self.minute_slots))
            self._rows[key] = row
            self._keys.append(key)
        return row

    def _at(self, row: int) -> tuple[_Block, int]:
        block, offset = divmod(row, self.block_rows)
        return self._blocks[block], offset

    def record(self, key: tuple[str, str], when: float, values: tuple[float, ...]) -> None:
        """One reading at unix time `when`; NaN for a series the GPU did not give."""
        # Scalar stores: for two series they cost less than building arrays.
        block, row = self._at(self._row(key))
        slot = int(block.raw_next[row])
        raw, total, count = block.raw, block.sum, block.count
        block.raw_time[row, slot] = when
        block.raw_next[row] = (slot + 1) % self.raw_slots
        minute = int(when // 60)
        if minute != block.open_minute[row]:
            self._close_minute(block, row)
            block.open_minute[row] = minute
        for index, value in enumerate(values):
            raw[row, slot, index] = value
            if not math.isnan(value):
                total[row, index] += value
                count[row, index] += 1

    def _close_minute(self, block: _Block, row: int) -> None:
        minute = block.open_minute[row]
        if minute < 0:
            return
        count = block.count[row]
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(count > 0, block.sum[row] / np.maximum(count, 1), np.nan)
        slot = minute % self.minute_slots
        block.minutes[row, slot] = means
        block.minute_of[row, slot] = minute
        block.sum[row] = 0
        block.count[row] = 0

    def window(self, key: tuple[str, str], seconds: float, now: float) -> dict[str, float]:
        """Means of each series over the readings of the last `seconds` (at most the raw
        ring); a series with no reading in the window is left out."""
        row = self._rows.get(key)
        if row is None:
            return {}
        block, row = self._at(row)
        recent = block.raw_time[row] >= now - seconds
        if not recent.any():
            return {}
        values = block.raw[row, recent]
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
        block, row = self._at(row)
        order = np.argsort(block.minute_of[row])
        out = []
        for slot in order:
            minute = int(block.minute_of[row, slot])
            if minute < 0:
                continue
            means = {
                name: float(block.minutes[row, slot, index])
                for index, name in enumerate(SERIES)
                if not np.isnan(block.minutes[row, slot, index])
            }
            out.append((minute, means))
        return out

    def forget(self, key: tuple[str, str]) -> None:
        """The GPU left: the last row moves into its place, so rows stay dense."""
        row = self._rows.pop(key, None)
        if row is None:
            return
        last_key = self._keys.pop()
        last = len(self._keys)
        source, source_row = self._at(last)
        if row != last:
            target, target_row = self._at(row)
            for to, of in zip(target.arrays(), source.arrays(), strict=True):
                to[target_row] = of[source_row]
            self._rows[last_key] = row
            self._keys[row] = last_key
        source.clear(source_row)
