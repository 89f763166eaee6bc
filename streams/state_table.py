"""Product states kept in a Faust Table of bytes, seen by the Processor as a plain mapping.

``TableStates`` is the ``states`` mapping that ``streams.processor.Processor`` reads and writes:
values are ``ProductState`` objects, stored in the Faust table as ``ProductState.to_bytes()``
(the table's changelog topic is what restores them after a restart). Writes are *staged*:
``Processor.process`` writes touched states back at the end of a batch, and the agent calls
``commit()`` only after the batch's rows are safely in ClickHouse, so a crash between the two
replays the batch from the last committed offset against the old state (at-least-once, and the
rows' deterministic keys make the replay harmless). ``rollback()`` forgets the staged writes of
a batch that failed and will be retried.

Reads decode a fresh object from the table's bytes, so a batch that failed half way (the pure
state mutates in place) can never leak its partial changes into the retry.

The table must be created with ``use_partitioner=True`` and the same key bytes as the input
topic (the product id, UTF-8), so a product's changelog record lands on the partition number
of its events: then table partitions follow Kafka's assignment of the input partitions.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from streams.state import ProductState


class TableStates(MutableMapping[str, ProductState]):
    """``MutableMapping[product_id, ProductState]`` over a ``MutableMapping[str, bytes]``.

    ``table`` is a Faust ``Table`` (value_serializer='raw') in the worker, or a dict in tests.
    """

    def __init__(self, table: MutableMapping[str, Any]):
        self.table = table
        self._staged: dict[str, ProductState] = {}

    # -- the mapping the Processor sees ---------------------------------------------------------
    def __getitem__(self, pid: str) -> ProductState:
        st = self._staged.get(pid)
        if st is not None:
            return st
        raw = self.table.get(pid)
        if raw is None:
            raise KeyError(pid)
        return ProductState.from_bytes(raw)

    def __setitem__(self, pid: str, state: ProductState) -> None:
        self._staged[pid] = state

    def __delitem__(self, pid: str) -> None:
        raise TypeError("product states are never deleted by the stream")

    def __iter__(self) -> Iterator[str]:
        yield from self._staged
        for pid in self.table:
            if pid not in self._staged:
                yield pid

    def __len__(self) -> int:
        return len(self.table) + sum(1 for pid in self._staged if pid not in self.table)

    def __contains__(self, pid: object) -> bool:
        return pid in self._staged or pid in self.table

    # -- batch boundaries -----------------------------------------------------------------------
    @property
    def staged(self) -> dict[str, ProductState]:
        return self._staged

    def commit(self) -> dict[str, ProductState]:
        """Write the staged states to the table (one changelog record each); returns them."""
        staged, self._staged = self._staged, {}
        for pid, st in staged.items():
            self.table[pid] = st.to_bytes()
        return staged

    def rollback(self) -> None:
        """Forget the staged writes (the batch will be processed again)."""
        self._staged = {}

    def raw_size(self, pid: str) -> int:
        raw = self.table.get(pid)
        return 0 if raw is None else len(raw)
