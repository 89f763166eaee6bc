"""Product states kept in a Faust Table of bytes, seen by the Processor as a plain mapping.

``TableStates`` is the ``states`` mapping that ``streams.processor.Processor`` reads and writes:
values are ``ProductState`` objects, stored in a Faust table (its changelog topic is what restores
them after a restart). Writes are *staged*: ``Processor.process`` writes touched states back at
the end of a batch, and the agent calls ``commit()`` only after the batch's rows are safely in
ClickHouse, so a crash between the two replays the batch from the last committed offset against
the old state (at-least-once, and the rows' deterministic keys make the replay harmless).

Small records. A product's state is rewritten to the changelog every batch that touches it, so
it is kept small: the video encodings (rows of ``ProductState.h``, the bulk of a state, fixed once a video is
published) are stored once per video under the key ``<product>|<video>`` (raw float32), and the
product record is ``ProductState.to_bytes()`` with those encodings left out, zlib-compressed.
An expired video's record is deleted (a tombstone), so the table grows with active videos only.
Both kinds of records share one table and go to the product's partition, in order: a video's
record is written before the product record that refers to it and deleted only after the product
record that dropped it, so whatever prefix of the changelog survives a crash is consistent.

Decoded states are cached (decoding per product per batch would be the larger part of a batch's
cost): a committed object is handed to the next batch, which may mutate it in place.
``rollback()`` drops the staged writes and the whole cache, so a batch that failed half way never
leaks its partial changes into the retry, which decodes the last committed records again.
``evict()`` drops cached objects (all of them after a rebalance).

The table's partition for a key must be the input partition of its product (see
``streams.app.ProductTable``), so table partitions follow Kafka's assignment of the input.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator, MutableMapping
from typing import Any

import numpy as np

from streams.state import ProductState

SEP = "|"  # product ids and video ids never contain it (schemas.events.Id)
COMPACT = b"Z1"  # prefix of a compact product record (a plain to_bytes() record starts with "{")


def video_key(pid: str, vid: str) -> str:
    return f"{pid}{SEP}{vid}"


def product_of(key: str) -> str:
    """The product a table key belongs to (a product key or a ``product|video`` key)."""
    return key.split(SEP, 1)[0]


def encode_product(state: ProductState) -> bytes:
    """The compact product record: the state without its video encodings, compressed."""
    if state.ids:
        state = dataclasses.replace(state, h=np.zeros((len(state.ids), 0), dtype=np.float32))
    return COMPACT + zlib.compress(state.to_bytes(), 1)


def decode_product(raw: bytes, encoding_of) -> ProductState:
    """A product record back to its state; ``encoding_of(video_id)`` gives the stored encodings."""
    if not raw.startswith(COMPACT):
        return ProductState.from_bytes(raw)
    st = ProductState.from_bytes(zlib.decompress(raw[len(COMPACT) :]))
    if st.ids:
        rows = []
        for vid in st.ids:
            h = encoding_of(vid)
            if h is None:
                raise KeyError(
                    f"product {st.product_id!r} refers to video {vid!r} whose encoding is not in the table"
                )
            rows.append(np.frombuffer(h, dtype="<f4"))
        st.h = np.stack(rows)  # (K, H)
    return st


class TableStates(MutableMapping[str, ProductState]):
    """``MutableMapping[product_id, ProductState]`` over a ``MutableMapping[str, bytes]``.

    ``table`` is a Faust ``Table`` (value_serializer='raw') in the worker, or a dict in tests.
    """

    def __init__(self, table: MutableMapping[str, Any]):
        self.table = table
        self._staged: dict[str, ProductState] = {}
        self._cache: dict[str, ProductState] = {}
        self._videos: dict[str, set[str]] = {}  # pid -> video ids with a record in the table

    # -- the mapping the Processor sees ---------------------------------------------------------
    def __getitem__(self, pid: str) -> ProductState:
        st = self._staged.get(pid)
        if st is not None:
            return st
        st = self._cache.get(pid)
        if st is not None:
            return st
        raw = self.table.get(pid) if SEP not in pid else None
        if raw is None:
            raise KeyError(pid)
        st = self._cache[pid] = decode_product(raw, lambda vid: self.table.get(video_key(pid, vid)))
        self._videos[pid] = set(st.ids)
        return st

    def __setitem__(self, pid: str, state: ProductState) -> None:
        self._staged[pid] = state

    def __delitem__(self, pid: str) -> None:
        raise TypeError("product states are never deleted by the stream")

    def __iter__(self) -> Iterator[str]:
        yield from self._staged
        for key in list(self.table):
            if SEP not in key and key not in self._staged:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, pid: object) -> bool:
        return pid in self._staged or (isinstance(pid, str) and SEP not in pid and pid in self.table)

    # -- batch boundaries -----------------------------------------------------------------------
    @property
    def staged(self) -> dict[str, ProductState]:
        return self._staged

    def commit(self) -> dict[str, ProductState]:
        """Write the staged states to the table (one changelog record each); returns them."""
        staged, self._staged = self._staged, {}
        for pid, st in staged.items():
            had = self._videos.get(pid)
            if had is None:  # not read through this mapping (a new product, or a caller's own object)
                had = {k.split(SEP, 1)[1] for k in self._video_keys(pid)}
            now = set(st.ids)
            for vid in now - had:  # the encoding first: the product record refers to it
                self.table[video_key(pid, vid)] = np.ascontiguousarray(
                    st.h[st.row(vid)], dtype="<f4"
                ).tobytes()
            self.table[pid] = encode_product(st)
            for vid in had - now:  # expired: the product record that dropped it is written already
                del self.table[video_key(pid, vid)]
            self._videos[pid] = now
        self._cache.update(staged)
        return staged

    def _video_keys(self, pid: str) -> list[str]:
        # only for products this mapping never decoded: a scan, rare (new products have none)
        if pid not in self.table:
            return []
        prefix = pid + SEP
        return [k for k in self.table if k.startswith(prefix)]

    def rollback(self) -> None:
        """Forget the staged writes and every decoded state (the batch will be processed again)."""
        self._staged = {}
        self._cache = {}
        self._videos = {}

    def evict(self, pids=None) -> None:
        """Drop cached decoded states (all when ``pids`` is None); the table stays the truth."""
        if pids is None:
            self._cache, self._videos = {}, {}
        else:
            for pid in pids:
                self._cache.pop(pid, None)
                self._videos.pop(pid, None)

    def record_sizes(self, pid: str) -> tuple[int, int]:
        """(bytes of the product record, bytes of its video records) in the table."""
        raw = self.table.get(pid)
        vids = self._videos.get(pid, set())
        return (0 if raw is None else len(raw)), sum(
            len(self.table.get(video_key(pid, v)) or b"") for v in vids
        )
