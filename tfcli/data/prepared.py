"""A prepared corpus on disk: the kept pairs' token ids in one flat binary file per side, an
index of offsets and lengths, read back with `numpy.memmap` (after fairseq's
MMapIndexedDataset).

    src.bin, tgt.bin     token ids end to end (uint16 or uint32, meta.json says which)
    src_offsets.npy ...  (N,) int64 start of each pair's ids in src.bin / tgt.bin
    src_lens.npy ...     (N,) int32 lengths without EOS / BOS
    lines.npy            (N,) int64 each pair's line number in the text files (0-based)
    meta.json            the cache key, the dtype, the filter counts; written last

Only the index lengths are read into memory (the batches are built from them); a batch's ids
are read from the page cache when the batch is used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from tfcli.atomic import fsync_dir, write_error
from tfcli.data.batching import Batch
from tfcli.data.encode_workers import EncodedChunk
from tfcli.data.pairs import FilterReport
from tfcli.data.tokenizer import BOS_ID, EOS_ID
from tfcli.errors import DataError, TfcliError

FORMAT = 1
META = "meta.json"
SIDES = ("src", "tgt")


class PreparedWriter:
    """Appends encoded chunks to a directory being built; `finish` makes every file durable."""

    def __init__(self, directory: Path, dtype: np.dtype) -> None:
        self.directory, self.dtype = directory, dtype
        self.files = {side: self._open(directory / f"{side}.bin") for side in SIDES}
        self.lens: dict[str, list[np.ndarray]] = {side: [] for side in SIDES}
        self.lines: list[np.ndarray] = []
        self.counts = [0, 0, 0]  # empty, too long, bad ratio
        self.read = 0

    def _open(self, path: Path) -> BinaryIO:
        try:
            return open(path, "wb")  # noqa: SIM115 - closed in finish/close
        except OSError as e:
            raise TfcliError(write_error(path, e, "prepared data")) from None

    def add(self, chunk: EncodedChunk) -> None:
        for side, ids, lens in (
            ("src", chunk.src_ids, chunk.src_lens),
            ("tgt", chunk.tgt_ids, chunk.tgt_lens),
        ):
            self._write(side, ids.astype(self.dtype, copy=False).tobytes())
            self.lens[side].append(lens)
        self.lines.append(chunk.lines)
        for i, n in enumerate((chunk.empty, chunk.too_long, chunk.bad_ratio)):
            self.counts[i] += n
        self.read += len(chunk.lines) + chunk.empty + chunk.too_long + chunk.bad_ratio

    def _write(self, side: str, data: bytes) -> None:
        try:
            self.files[side].write(data)
        except OSError as e:
            raise TfcliError(write_error(self.files[side].name, e, "prepared data")) from None

    def report(self) -> FilterReport:
        return FilterReport(sum(map(len, self.lines)), *self.counts)

    def finish(self, meta: dict) -> None:
        """Close, write the index and meta.json, fsync every file and the directory."""
        for side in SIDES:
            f = self.files[side]
            f.flush()
            os.fsync(f.fileno())
            f.close()
            lens = np.concatenate(self.lens[side]) if self.lens[side] else np.zeros(0, np.int32)
            offsets = np.zeros(len(lens), np.int64)
            np.cumsum(lens[:-1], out=offsets[1:])
            self._save(f"{side}_lens.npy", lens.astype(np.int32))
            self._save(f"{side}_offsets.npy", offsets)
        lines = np.concatenate(self.lines) if self.lines else np.zeros(0, np.int64)
        self._save("lines.npy", lines)
        r = self.report()
        meta = meta | {"format": FORMAT, "dtype": self.dtype.name, "pairs": r.kept}
        meta |= {"read": self.read, "empty": r.empty, "too_long": r.too_long}
        meta["bad_ratio"] = r.bad_ratio
        self._save(META, json.dumps(meta, indent=1).encode("utf-8"))
        fsync_dir(self.directory)

    def close(self) -> None:
        for f in self.files.values():
            f.close()

    def _save(self, name: str, value: np.ndarray | bytes) -> None:
        path = self.directory / name
        try:
            with open(path, "wb") as f:
                if isinstance(value, bytes):
                    f.write(value)
                else:
                    np.save(f, value, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise TfcliError(write_error(path, e, "prepared data")) from None


def read_meta(directory: Path) -> dict | None:
    """meta.json of a complete prepared directory, None when there is none or it is unreadable."""
    try:
        meta = json.loads((directory / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


class PreparedCorpus:
    """The kept pairs of a prepared directory: lengths in memory, ids memory-mapped."""

    def __init__(self, directory: Path) -> None:
        meta = read_meta(directory)
        if meta is None:
            raise DataError(f"{directory}: not a complete prepared corpus (no {META})")
        self.directory, self.meta = directory, meta
        dtype = np.dtype(meta["dtype"])
        self.ids = {side: _memmap(directory / f"{side}.bin", dtype) for side in SIDES}
        self.lens = {side: np.load(directory / f"{side}_lens.npy") for side in SIDES}
        self.offsets = {
            side: np.load(directory / f"{side}_offsets.npy", mmap_mode="r") for side in SIDES
        }
        self.lines = np.load(directory / "lines.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def src_lens(self) -> np.ndarray:
        return self.lens["src"]

    @property
    def tgt_lens(self) -> np.ndarray:
        return self.lens["tgt"]

    @property
    def report(self) -> FilterReport:
        m = self.meta
        return FilterReport(m["pairs"], m["empty"], m["too_long"], m["bad_ratio"])

    def ids_of(self, side: str, item: int) -> np.ndarray:
        """The ids of one pair's side (no EOS/BOS)."""
        start = int(self.offsets[side][item])
        return self.ids[side][start : start + int(self.lens[side][item])]

    def collate(self, items: np.ndarray) -> Batch:
        """The padded batch of pairs `items` (positions in the index), as `collate` makes it."""
        src = self._rows("src", items, head=None, tail=EOS_ID)
        tgt_in = self._rows("tgt", items, head=BOS_ID, tail=None)
        tgt_out = self._rows("tgt", items, head=None, tail=EOS_ID)
        return Batch(src, tgt_in, tgt_out, [int(i) for i in self.lines[items]])

    def _rows(
        self, side: str, items: np.ndarray, head: int | None, tail: int | None
    ) -> torch.Tensor:
        lens = self.lens[side][items]
        out = np.zeros((len(items), int(lens.max(initial=0)) + 1), np.int64)  # (B, L) PAD = 0
        shift = 0 if head is None else 1
        if head is not None:
            out[:, 0] = head
        for row, item in enumerate(items.tolist()):
            n = int(lens[row])
            out[row, shift : shift + n] = self.ids_of(side, item)
            if tail is not None:
                out[row, n] = tail
        return torch.from_numpy(out)


def _memmap(path: Path, dtype: np.dtype) -> np.ndarray:
    """The file's ids, memory-mapped (an empty file cannot be mapped: an empty array)."""
    if path.stat().st_size == 0:
        return np.zeros(0, dtype)
    return np.memmap(path, dtype=dtype, mode="r")
