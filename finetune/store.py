"""Sharded, memory-mapped datasets on disk: what `finetune data` writes and training reads.

A split (``train``, ``heldout``, ``cpt``, ``sft``, ...) is a folder of Arrow IPC stream files
``shard-00000.arrow``, ``shard-00001.arrow``, ... written by ``ShardWriter`` a record batch at a time, so
building a split from a 2-million-unit memory never holds more than one batch in memory. The files are the
format Hugging Face ``datasets`` memory-maps (``Dataset.from_file``): ``open_split`` gives a
``datasets.Dataset`` over all shards without reading them into memory, which the trainers consume (and
tokenize lazily, batch by batch). ``Rows`` is the same data as a plain Python sequence of our own dataclasses
(``Pair``, ``SftExample``, ``CptDoc``) for code and tests that want objects.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Iterator

SHARD_GLOB = "shard-*.arrow"


class ShardWriter:
    """Rows (dicts) -> Arrow stream shards of at most `shard_rows` rows, written `batch_rows` at a time.

    The folder is written as ``<dir>.tmp`` and renamed into place by ``close()``, so a split folder is either
    complete or absent. Use as a context manager; an exception leaves no partial split behind.
    """

    def __init__(self, directory: str | Path, schema, *, shard_rows: int = 200_000, batch_rows: int = 1000):
        import pyarrow as pa

        self.pa = pa
        self.directory = Path(directory)
        self.tmp = self.directory.with_name(self.directory.name + ".tmp")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self.schema = schema
        self.shard_rows, self.batch_rows = shard_rows, batch_rows
        self.rows = 0
        self._buffer: list[dict[str, Any]] = []
        self._shard = -1
        self._in_shard = 0
        self._sink = self._stream = None

    def _open_shard(self) -> None:
        self._close_shard()
        self._shard += 1
        self._sink = self.pa.OSFile(str(self.tmp / f"shard-{self._shard:05d}.arrow"), "wb")
        self._stream = self.pa.ipc.new_stream(self._sink, self.schema)
        self._in_shard = 0

    def _close_shard(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._sink.close()
            self._stream = self._sink = None

    def _flush(self) -> None:
        rows = self._buffer
        while rows:
            if self._stream is None or self._in_shard >= self.shard_rows:
                self._open_shard()
            take = rows[:self.shard_rows - self._in_shard]
            rows = rows[len(take):]
            self._stream.write_batch(self.pa.RecordBatch.from_pylist(take, schema=self.schema))
            self._in_shard += len(take)
        self._buffer = []

    def write(self, row: dict[str, Any]) -> None:
        self._buffer.append(row)
        self.rows += 1
        if len(self._buffer) >= self.batch_rows:
            self._flush()

    def close(self) -> Path:
        self._flush()
        if self._stream is None:  # an empty split is still a readable split: one empty shard
            self._open_shard()
        self._close_shard()
        if self.directory.exists():
            shutil.rmtree(self.directory)
        os.replace(self.tmp, self.directory)
        (self.directory / "rows.json").write_text(json.dumps({"rows": self.rows}) + "\n")
        return self.directory

    def abort(self) -> None:
        self._close_shard()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def shard_files(directory: str | Path) -> list[Path]:
    files = sorted(Path(directory).glob(SHARD_GLOB))
    if not files:
        from tower_cat.finetune.data import DataError

        raise DataError("not a dataset folder (no shard-*.arrow files)", path=directory,
                        hint="build it with `tower-cat finetune data --out DIR`")
    return files


def is_split(directory: str | Path) -> bool:
    return Path(directory).is_dir() and any(Path(directory).glob(SHARD_GLOB))


def open_split(directory: str | Path):
    """All shards of a split as one memory-mapped ``datasets.Dataset`` (nothing is read into memory)."""
    from datasets import Dataset, concatenate_datasets

    parts = [Dataset.from_file(str(f), in_memory=False) for f in shard_files(directory)]
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


def iter_rows(directory: str | Path, batch_rows: int = 1000) -> Iterator[dict[str, Any]]:
    """Rows of a split in order, one record batch at a time (memory-mapped reads)."""
    import pyarrow as pa

    for f in shard_files(directory):
        with pa.memory_map(str(f)) as source:
            reader = pa.ipc.open_stream(source)
            for batch in reader:
                for start in range(0, batch.num_rows, batch_rows):
                    yield from batch.slice(start, batch_rows).to_pylist()


def count_rows(directory: str | Path) -> int:
    meta = Path(directory) / "rows.json"
    if meta.is_file():
        return int(json.loads(meta.read_text())["rows"])
    return len(open_split(directory))


class Rows(Sequence):
    """A split as a read-only sequence of objects (``convert(row_dict)``), memory-mapped, never loaded whole."""

    def __init__(self, directory: str | Path, convert: Callable[[dict[str, Any]], Any]):
        self.directory = Path(directory)
        self.convert = convert
        self._ds = None

    @property
    def dataset(self):
        if self._ds is None:
            self._ds = open_split(self.directory)
        return self._ds

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        if isinstance(index, slice):
            idx = range(*index.indices(len(self)))
            if not idx:
                return []
            rows = self.dataset.select(idx) if idx.step != 1 else self.dataset.select(range(idx.start, idx.stop))
            return [self.convert(r) for r in rows]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(index)
        return self.convert(self.dataset[index])

    def __iter__(self):
        for row in iter_rows(self.directory):
            yield self.convert(row)

    def __repr__(self) -> str:
        return f"Rows({str(self.directory)!r}, {len(self)} rows)"
