"""The telemetry journal: every agent message the control plane acknowledges is
first appended here and made durable, so an acknowledged sample survives a
crash of the control plane.

The journal is a directory of segment files, `00000001.seg`, `00000002.seg`, ...
Each record is framed as

    length (u32 LE) | crc32 (u32 LE) | kind (u8) | key length (u16 LE) | key | body

where the CRC covers kind, key length, key and body, the key names the node
("provider/cluster/node") and the body is a serialized StreamTelemetryRequest.
Appends are written at once and fsynced in groups: `append` returns when the
group holding the record is on disk. A torn tail after a crash fails its CRC
and is cut off when the journal is opened.

A segment that grows past `segment_bytes` is closed and a new one started; it
opens with a checkpoint record per node (its agent instance, last sequence and
inventory), so the state of every node survives when the oldest segments are
deleted beyond `retain_segments`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)
_HEADER = struct.Struct("<IIBH")
_CRC_FROM = 8  # the CRC covers everything after length and crc
SUFFIX = ".seg"
MAX_KEY = 0xFFFF


class Kind(IntEnum):
    MESSAGE = 1  # a message of an agent, as received
    CHECKPOINT = 2  # a node's state at a segment start


@dataclass(frozen=True, slots=True)
class Record:
    kind: Kind
    key: str
    body: bytes


class JournalError(Exception):
    """The journal cannot be written (disk full, read-only file system)."""


def frame(kind: Kind, key: str, body: bytes) -> bytes:
    encoded = key.encode()
    if len(encoded) > MAX_KEY:
        raise ValueError("journal key too long")
    tail = struct.pack("<BH", kind, len(encoded)) + encoded + body
    return struct.pack("<II", len(tail), zlib.crc32(tail)) + tail


def read_segment(path: Path) -> tuple[list[Record], int]:
    """The intact records of a segment and the byte offset where they end."""
    data = path.read_bytes()
    records: list[Record] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc, kind, key_length = _HEADER.unpack_from(data, offset)
        end = offset + _CRC_FROM + length
        if end > len(data) or zlib.crc32(data[offset + _CRC_FROM : end]) != crc:
            break
        try:
            record_kind = Kind(kind)
        except ValueError:
            break
        key_start = offset + _HEADER.size
        body_start = key_start + key_length
        key = data[key_start:body_start].decode()
        records.append(Record(record_kind, key, data[body_start:end]))
        offset = end
    return records, offset


class Journal:
    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 64 * 2**20,
        retain_segments: int = 8,
        fsync: bool = True,
    ) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.retain_segments = max(2, retain_segments)
        self.fsync = fsync
        self._file: BinaryIO | None = None
        self._segment = 0
        self._size = 0
        # The appends since the last sync started share one future: the group commit.
        self._group: asyncio.Future[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._checkpoint: Callable[[], Iterable[tuple[str, bytes]]] = lambda: ()
        self.appended = 0
        self.syncs = 0

    def segments(self) -> list[Path]:
        return sorted(self.directory.glob(f"*{SUFFIX}"))

    def open(self, checkpoint: Callable[[], Iterable[tuple[str, bytes]]]) -> Iterator[Record]:
        """Yields every intact record, oldest first, cutting off a torn tail;
        then the journal takes appends. `checkpoint` gives (key, body) per node
        for the start of each new segment."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._checkpoint = checkpoint
        segments = self.segments()
        for number, path in enumerate(segments):
            records, end = read_segment(path)
            if end < path.stat().st_size:
                if number < len(segments) - 1:
                    log.error("telemetry journal segment %s is damaged; later ones kept", path)
                else:
                    log.warning("telemetry journal: cut a torn record at the end of %s", path)
                with path.open("r+b") as handle:
                    handle.truncate(end)
            yield from records
        self._segment = int(segments[-1].stem) if segments else 0
        self._start_segment(checkpointed=bool(segments))

    def _start_segment(self, *, checkpointed: bool) -> None:
        if self._file is not None:
            self._sync_file()
            self._file.close()
        self._segment += 1
        path = self.directory / f"{self._segment:08d}{SUFFIX}"
        self._file = path.open("ab")
        self._size = 0
        if checkpointed:
            for key, body in self._checkpoint():
                self._write(frame(Kind.CHECKPOINT, key, body))
            self._sync_file()
        _sync_directory(self.directory)
        for old in self.segments()[: -self.retain_segments]:
            old.unlink()

    def _write(self, data: bytes) -> None:
        assert self._file is not None, "the journal is not open"
        self._file.write(data)
        self._size += len(data)

    def append(self, key: str, body: bytes) -> asyncio.Future[None]:
        """Writes a message record; the future completes once it is durable."""
        try:
            self._write(frame(Kind.MESSAGE, key, body))
        except OSError as error:
            raise JournalError(f"the telemetry journal cannot be written: {error}") from error
        self.appended += 1
        if self._group is None:
            self._group = asyncio.get_running_loop().create_future()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return self._group

    async def _flush(self) -> None:
        # Everything appended while one sync runs goes into the next one: a group commit.
        while self._group is not None:
            group, self._group = self._group, None
            try:
                assert self._file is not None
                self._file.flush()
                if self.fsync:
                    await asyncio.to_thread(os.fdatasync, self._file.fileno())
                self.syncs += 1
                if self._size >= self.segment_bytes:
                    self._start_segment(checkpointed=True)
            except OSError as error:
                group.set_exception(
                    JournalError(f"the telemetry journal cannot be written: {error}")
                )
                continue
            group.set_result(None)

    def _sync_file(self) -> None:
        assert self._file is not None
        self._file.flush()
        if self.fsync:
            os.fdatasync(self._file.fileno())

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._file is not None:
            self._sync_file()
            self._file.close()
            self._file = None


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
