"""Sinks that write events and output rows to ClickHouse, and stores that read them back.

Write side, one protocol and two adapters; rows are any model in ``schemas.ddl.TABLE_OF``,
turned into tuples by ``schemas.ddl.row_of`` and inserted per table in batches:

- :class:`ChdbSink`: embedded ClickHouse (chdb) for the in-process runner. Synchronous: it
  inserts when ``batch_rows`` rows are buffered and on ``flush()``/``close()``. Rows go in as one
  Arrow stream per table (exact types, no SQL text).
- :class:`ClickHouseSink`: a ClickHouse server over the native protocol (clickhouse-driver) for
  the Faust worker. A background thread owns the one client, inserts with rows as parameters,
  flushes on size (``batch_rows``) or age (``flush_interval_s``), and while the server is
  unreachable keeps the batch and retries with exponential backoff, so nothing is lost once
  the server returns. The buffer is bounded (``max_buffer_rows``): ``write`` **blocks** while it
  is full and raises :class:`SinkBackpressure` after ``put_timeout_s`` with none of that call's
  rows taken, so the caller may retry the same rows. Async agents use ``write_async`` /
  ``flush_async`` (the blocking call runs in a worker thread).

Both create the schema first (``ensure_schema``: ``schemas.ddl.create_all``, then the columns
that tables written by an earlier version lack, added with a default). Writes are idempotent: every table is
a ReplacingMergeTree keyed by the row's deterministic key, so a retried or redelivered row
replaces itself; read with ``FINAL`` (``count_final``) for exact counts.

Read side: ``open_store("chdb:///abs/dir")`` or ``open_store("clickhouse://host:port/db")``
returns a :class:`Store` with ``query(sql, params)`` -> rows, ``query_with_columns`` and
``count_final(table)``. Both return the same Python values (naive UTC datetimes, dates, ints,
floats, str, None), so tests compare one engine with the other.

chdb allows one data path per process: :func:`chdb_session` hands out one shared, locked
session per path and refuses a second path while the first is open.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from schemas.ddl import COLUMNS, TABLES, add_missing_columns, create_all, row_of

DEFAULT_DATABASE = "liftstream"
log = logging.getLogger(__name__)


def ensure_schema(
    database: str, run: Callable[[str], Any], rows: Callable[[str], Iterable[Sequence[Any]]]
) -> list[str]:
    """Create ``database``'s tables where missing and add the columns a table written by an
    earlier version lacks (``schemas.ddl.add_missing_columns``); returns the ALTERs it ran.
    ``run`` executes a statement, ``rows`` runs a query and returns its rows."""
    for stmt in create_all(database):
        run(stmt)
    existing: dict[str, set[str]] = defaultdict(set)
    for table, column in rows(f"SELECT table, name FROM system.columns WHERE database = '{database}'"):
        existing[str(table)].add(str(column))
    alters = add_missing_columns(database, existing)
    for stmt in alters:
        log.warning("schema: %s", stmt)
        run(stmt)
    return alters


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SinkError(Exception):
    """Base of the sink errors."""


class SinkBackpressure(SinkError):
    """The buffer stayed full for ``put_timeout_s``; none of the rows of that call were taken."""


class SinkClosed(SinkError):
    """``write`` or ``flush`` after ``close``."""


class SinkFlushTimeout(SinkError):
    """``flush`` or ``close`` ran out of time with rows still unwritten (they stay buffered)."""


class SinkFailed(SinkError):
    """The server refused a batch for a reason a retry cannot fix; the sink stopped writing."""


class StoreError(Exception):
    """A store query failed; the engine's error is the ``__cause__``."""


class StoreURLError(ValueError):
    """A store URL that ``open_store`` does not understand."""


class ChdbPathInUse(RuntimeError):
    """chdb is already open on another data path in this process (one path per process)."""


def check_identifier(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a plain ClickHouse identifier: {name!r}")
    return name


def group_rows(rows: Iterable[BaseModel]) -> tuple[dict[str, list[tuple[Any, ...]]], int]:
    """Rows by table in ``COLUMNS`` order, and how many there were."""
    grouped: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    n = 0
    for model in rows:
        table, row = row_of(model)
        grouped[table].append(row)
        n += 1
    return grouped, n


@runtime_checkable
class Sink(Protocol):
    def write(self, rows: Iterable[BaseModel]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class SinkStats:
    rows_accepted: int = 0  # taken by write()
    rows_written: int = 0  # acknowledged by the engine
    inserts: int = 0  # INSERT statements that succeeded
    retries: int = 0  # failed attempts that were retried (server unreachable or busy)
    backpressure: int = 0  # write() calls refused with SinkBackpressure
    last_error: str | None = None


# ----------------------------------------------------------------------------------------------
# Arrow: the DDL's column types as Arrow types, and query results back to Python values

_ARROW_OF = {
    "String": pa.string(),
    "Date": pa.date32(),
    # DateTime values are naive UTC (schemas.ddl.row_of); an explicit zone keeps them UTC
    # whatever the engine's session zone is
    "DateTime": pa.timestamp("s", tz="UTC"),
    "UInt8": pa.uint8(),
    "UInt16": pa.uint16(),
    "UInt32": pa.uint32(),
    "UInt64": pa.uint64(),
    "Int8": pa.int8(),
    "Int16": pa.int16(),
    "Int32": pa.int32(),
    "Int64": pa.int64(),
    "Float32": pa.float32(),
    "Float64": pa.float64(),
}


def arrow_type(ch_type: str) -> pa.DataType:
    if ch_type.startswith("Nullable("):
        ch_type = ch_type[len("Nullable(") : -1]
    return _ARROW_OF[ch_type]


ARROW_SCHEMAS: dict[str, pa.Schema] = {
    name: pa.schema([pa.field(c, arrow_type(t), nullable=t.startswith("Nullable(")) for c, t in cols])
    for name, (cols, _, _) in TABLES.items()
}


def arrow_table(table: str, rows: list[tuple[Any, ...]]) -> pa.Table:
    """Row tuples (``COLUMNS`` order) as an Arrow table with the DDL's types (raises on a bad value)."""
    schema = ARROW_SCHEMAS[table]
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
    return pa.Table.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)], schema=schema
    )


def _python_rows(tbl: pa.Table) -> list[tuple[Any, ...]]:
    cols = []
    for col in tbl.columns:
        if pa.types.is_timestamp(col.type) and col.type.tz is not None:
            col = col.cast(pa.timestamp(col.type.unit))  # same instant, naive UTC like clickhouse-driver
        cols.append(col.to_pylist())
    return list(zip(*cols, strict=True))


# ----------------------------------------------------------------------------------------------
# chdb: one shared session per process


class ChdbSession:
    """A chdb session with a lock: chdb runs one statement at a time per connection."""

    def __init__(self, session: Any, path: str | None = None):
        self.session = session
        self.path = path
        self.lock = threading.RLock()
        self._refs = 1

    def query(self, sql: str, fmt: str = "CSV") -> Any:
        with self.lock:
            return self.session.query(sql, fmt)

    def insert_arrow(self, insert_sql: str, tbl: pa.Table) -> None:
        """``insert_sql`` is ``INSERT INTO db.t (cols)``; the rows go as one Arrow IPC stream."""
        out = pa.BufferOutputStream()
        with pa.ipc.new_stream(out, tbl.schema) as writer:
            writer.write_table(tbl)
        data = out.getvalue().to_pybytes()
        with self.lock, self.session.send_insert(insert_sql, "ArrowStream") as ins:
            ins.append(data)
            ins.finish()

    def release(self) -> None:
        """Drop one reference from :func:`chdb_session`; the last one closes the session."""
        with _CHDB_LOCK:
            self._refs -= 1
            if self._refs > 0 or self.path is None:
                return
            _CHDB_OPEN.pop(self.path, None)
        with self.lock:
            self.session.close()


_CHDB_OPEN: dict[str, ChdbSession] = {}
_CHDB_LOCK = threading.Lock()


def chdb_session(path: str | Path) -> ChdbSession:
    """The process's shared chdb session on ``path`` (opened on first use; ``release()`` when done).

    Raises :class:`ChdbPathInUse` when another path is open: chdb keeps one path per process.
    """
    from chdb import session as chdb_sessions  # a heavy import, only for the embedded engine

    key = str(Path(path).resolve())
    with _CHDB_LOCK:
        if key in _CHDB_OPEN:
            shared = _CHDB_OPEN[key]
            shared._refs += 1
            return shared
        if _CHDB_OPEN:
            raise ChdbPathInUse(
                f"chdb is open on {next(iter(_CHDB_OPEN))} in this process; cannot open {key}"
            )
        Path(key).mkdir(parents=True, exist_ok=True)
        # session_timezone=UTC: toDate(emitted_at) and friends agree with the server (UTC) config
        shared = ChdbSession(chdb_sessions.Session(f"{key}?session_timezone=UTC"), key)
        _CHDB_OPEN[key] = shared
        return shared


def _as_chdb(path_or_session: str | Path | ChdbSession | Any) -> tuple[ChdbSession, bool]:
    """(session, owned): a path opens (and later releases) the shared session; objects are borrowed."""
    if isinstance(path_or_session, ChdbSession):
        return path_or_session, False
    if isinstance(path_or_session, str | Path):
        return chdb_session(path_or_session), True
    return ChdbSession(path_or_session), False  # a raw chdb Session / connection


class ChdbSink:
    """Embedded ClickHouse sink: synchronous, inserts every ``batch_rows`` rows and on flush/close.

    Safe to call from several threads (the worker runs it off the event loop with to_thread).
    """

    def __init__(
        self,
        path_or_session: str | Path | ChdbSession | Any,
        database: str = DEFAULT_DATABASE,
        batch_rows: int = 50_000,
    ):
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        self.database = check_identifier(database)
        self.batch_rows = batch_rows
        self.stats = SinkStats()
        self._chdb, self._owned = _as_chdb(path_or_session)
        self._buf: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self._buffered = 0
        self._closed = False
        self._lock = threading.RLock()
        self._ensure_schema()

    def _ensure_schema(self) -> None:
        ensure_schema(self.database, self._chdb.query, ChdbStore(self._chdb, self.database).query)

    @property
    def session(self) -> ChdbSession:
        return self._chdb

    def store(self) -> ChdbStore:
        """A read store on the same session and database (borrowed: closing it keeps the sink open)."""
        return ChdbStore(self._chdb, self.database)

    def reset(self) -> None:
        """Drop and re-create this database's tables and forget buffered rows (a fresh run)."""
        with self._lock:
            self._buf.clear()
            self._buffered = 0
            for table in TABLES:
                self._chdb.query(f"DROP TABLE IF EXISTS {self.database}.{table}")
            self._ensure_schema()

    def write(self, rows: Iterable[BaseModel]) -> None:
        grouped, n = group_rows(rows)
        with self._lock:
            if self._closed:
                raise SinkClosed("write after close")
            for table, table_rows in grouped.items():
                self._buf[table].extend(table_rows)
            self._buffered += n
            self.stats.rows_accepted += n
            if self._buffered >= self.batch_rows:
                self._flush()

    def flush(self) -> None:
        with self._lock:
            if self._closed:
                raise SinkClosed("flush after close")
            self._flush()

    def _flush(self) -> None:
        for table in list(self._buf):
            rows = self._buf[table]
            cols = ", ".join(f"`{c}`" for c in COLUMNS[table])
            try:
                self._chdb.insert_arrow(
                    f"INSERT INTO {self.database}.{table} ({cols})", arrow_table(table, rows)
                )
            except Exception as exc:  # chdb raises untyped errors; pyarrow raises on out-of-range values
                raise SinkFailed(f"chdb insert of {len(rows)} rows into {table} failed: {exc}") from exc
            del self._buf[table]  # only once the engine took them: a failed insert keeps its rows
            self._buffered -= len(rows)
            self.stats.rows_written += len(rows)
            self.stats.inserts += 1

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._flush()
            finally:
                self._closed = True
                if self._owned:
                    self._chdb.release()

    def __enter__(self) -> ChdbSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------
# ClickHouse server (clickhouse-driver, native protocol)


def _retryable(exc: BaseException) -> bool:
    """Errors a later attempt can get past: the server is down, restarting or busy."""
    from clickhouse_driver import errors as ch

    if isinstance(exc, ch.NetworkError | ch.SocketTimeoutError | ch.UnexpectedPacketFromServerError):
        return True
    if isinstance(exc, EOFError | OSError):  # includes ConnectionError, TimeoutError
        return True
    if isinstance(exc, ch.ServerException):
        codes = ch.ErrorCodes
        return exc.code in {
            codes.UNKNOWN_TABLE,  # a server restarted on an empty data dir: the schema is re-created
            codes.UNKNOWN_DATABASE,
            codes.TOO_MANY_PARTS,
            codes.MEMORY_LIMIT_EXCEEDED,
            codes.CANNOT_ALLOCATE_MEMORY,
            codes.TIMEOUT_EXCEEDED,
            codes.SOCKET_TIMEOUT,
            codes.NETWORK_ERROR,
            codes.TOO_MANY_SIMULTANEOUS_QUERIES,
            codes.ABORTED,  # a query cut short by a server shutting down
            codes.QUERY_WAS_CANCELLED,
        }
    return False


def clickhouse_client(
    host: str, port: int, user: str, password: str, connect_timeout_s: float, send_receive_timeout_s: float
):
    """The clickhouse-driver client of a sink or a store (a ping reply is bounded like a connect)."""
    from clickhouse_driver import Client

    return Client(
        host,
        port=port,
        user=user,
        password=password,
        connect_timeout=connect_timeout_s,
        send_receive_timeout=send_receive_timeout_s,
        sync_request_timeout=connect_timeout_s,
    )


class ClickHouseSink:
    """Buffered, retrying sink into a ClickHouse server; see the module docstring for the contract.

    Leave ``types_check`` off: clickhouse-driver 0.2.11 with ``types_check=True`` masks an
    out-of-range unsigned int to fit (2**32 into UInt32 stores 0), while off, the value is
    refused (``TypeMismatchError``, which stops the sink with :class:`SinkFailed`).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9000,
        database: str = DEFAULT_DATABASE,
        *,
        batch_rows: int = 10_000,
        flush_interval_s: float = 1.0,
        max_buffer_rows: int = 200_000,
        put_timeout_s: float = 30.0,
        retry_initial_s: float = 0.05,
        retry_max_s: float = 2.0,
        connect_timeout_s: float = 2.0,
        send_receive_timeout_s: float = 30.0,
        user: str = "default",
        password: str = "",
        types_check: bool = False,
    ):

        if not 1 <= batch_rows <= max_buffer_rows:
            raise ValueError("need 1 <= batch_rows <= max_buffer_rows")
        self.database = check_identifier(database)
        self.batch_rows = batch_rows
        self.flush_interval_s = flush_interval_s
        self.max_buffer_rows = max_buffer_rows
        self.put_timeout_s = put_timeout_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.types_check = types_check
        self.stats = SinkStats()
        self._client = clickhouse_client(
            host, port, user, password, connect_timeout_s, send_receive_timeout_s
        )
        self._cond = threading.Condition()
        self._buf: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self._buffered = 0  # rows in _buf
        self._inflight = 0  # rows taken by the writer thread, not yet acknowledged
        self._oldest = 0.0  # monotonic time the oldest row in _buf arrived
        self._accepted = 0
        self._written = 0
        self._flush_waiters = 0
        self._schema_ready = False
        self._closing = False
        self._abort = False
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"clickhouse-sink-{database}", daemon=True)
        self._thread.start()

    # -- caller side ---------------------------------------------------------------------------

    @property
    def buffered_rows(self) -> int:
        """Rows taken by ``write`` and not yet acknowledged by the server."""
        with self._cond:
            return self._buffered + self._inflight

    def write(self, rows: Iterable[BaseModel]) -> None:
        """Buffer rows; blocks while the buffer is full, then raises :class:`SinkBackpressure`.

        A call is taken whole or not at all. One call larger than ``max_buffer_rows`` is taken
        when the buffer is empty, so it cannot wait forever.
        """
        grouped, n = group_rows(rows)
        if n == 0:
            return
        with self._cond:
            self._check_usable()
            deadline = time.monotonic() + self.put_timeout_s
            while (held := self._buffered + self._inflight) and held + n > self.max_buffer_rows:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.stats.backpressure += 1
                    raise SinkBackpressure(
                        f"{held} rows buffered (max {self.max_buffer_rows}) for {self.put_timeout_s} s; "
                        f"last error: {self.stats.last_error}"
                    )
                self._cond.wait(remaining)
                self._check_usable()
            if self._buffered == 0:
                self._oldest = time.monotonic()
            for table, table_rows in grouped.items():
                self._buf[table].extend(table_rows)
            self._buffered += n
            self._accepted += n
            self.stats.rows_accepted += n
            self._cond.notify_all()

    def flush(self, timeout_s: float | None = 60.0) -> None:
        """Return once every row written before this call is in the server.

        Raises :class:`SinkFlushTimeout` (rows stay buffered and keep being retried) or
        :class:`SinkFailed`.
        """
        with self._cond:
            self._check_usable()
            self._wait_written(self._accepted, timeout_s)

    def close(self, timeout_s: float | None = 60.0) -> None:
        """Flush, stop the writer thread and disconnect. Raises like ``flush`` if rows are left."""
        error: SinkError | None = None
        with self._cond:
            if self._closed:
                return
            self._closing = True
            self._cond.notify_all()
            try:
                self._wait_written(self._accepted, timeout_s)
            except SinkError as exc:
                error = exc
            self._closed = True
            self._abort = True
            self._cond.notify_all()
        self._thread.join()  # at most one attempt: send_receive_timeout_s bounds it
        self._client.disconnect()
        if error is not None:
            raise error

    async def write_async(self, rows: Iterable[BaseModel]) -> None:
        await asyncio.to_thread(self.write, list(rows))

    async def flush_async(self, timeout_s: float | None = 60.0) -> None:
        await asyncio.to_thread(self.flush, timeout_s)

    async def close_async(self, timeout_s: float | None = 60.0) -> None:
        await asyncio.to_thread(self.close, timeout_s)

    def __enter__(self) -> ClickHouseSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_usable(self) -> None:
        if self._error is not None:
            raise SinkFailed(f"sink stopped: {self._error!r}") from self._error
        if self._closed or self._closing:
            raise SinkClosed("sink is closed")

    def _wait_written(self, target: int, timeout_s: float | None) -> None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._flush_waiters += 1
        self._cond.notify_all()
        try:
            while self._written < target:
                if self._error is not None:
                    raise SinkFailed(f"sink stopped: {self._error!r}") from self._error
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise SinkFlushTimeout(
                        f"{target - self._written} rows not written after {timeout_s} s; "
                        f"last error: {self.stats.last_error}"
                    )
                self._cond.wait(remaining)
        finally:
            self._flush_waiters -= 1

    # -- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = self.retry_initial_s
        pending: dict[str, list[tuple[Any, ...]]] | None = None
        pending_n = 0
        while True:
            with self._cond:
                if self._abort:
                    return
                if pending is None and self._schema_ready:
                    while not self._due():
                        if self._closing and self._buffered == 0:
                            return
                        self._cond.wait(self._wait_s())
                        if self._abort:
                            return
                    pending, pending_n = dict(self._buf), self._buffered
                    self._buf, self._buffered, self._inflight = defaultdict(list), 0, pending_n
            try:
                if not self._schema_ready:
                    ensure_schema(self.database, self._client.execute, self._client.execute)
                    self._schema_ready = True
                for table in list(pending or ()):
                    cols = ", ".join(f"`{c}`" for c in COLUMNS[table])
                    self._client.execute(
                        f"INSERT INTO {self.database}.{table} ({cols}) VALUES",
                        pending[table],
                        types_check=self.types_check,
                    )
                    self.stats.inserts += 1
                    del pending[table]  # acknowledged: a retry resends only the tables left
            except Exception as exc:  # noqa: BLE001 - sorted into retryable or fatal below
                self.stats.last_error = repr(exc)
                if not _retryable(exc):
                    log.error("clickhouse sink %s stopped: %r", self.database, exc)
                    with self._cond:
                        self._error = exc
                        self._cond.notify_all()
                    return
                if backoff == self.retry_initial_s:  # once per outage, not once per attempt
                    log.warning("clickhouse sink %s: %r; retrying with backoff", self.database, exc)
                self.stats.retries += 1
                self._schema_ready = False  # a restarted server may have lost it; IF NOT EXISTS is cheap
                self._client.disconnect()
                with self._cond:
                    if not self._abort:
                        self._cond.wait(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
                continue
            if backoff != self.retry_initial_s:
                log.warning(
                    "clickhouse sink %s: server back after %d retries", self.database, self.stats.retries
                )
            backoff = self.retry_initial_s
            if pending is not None:
                with self._cond:
                    self._written += pending_n
                    self._inflight = 0
                    self.stats.rows_written += pending_n
                    self._cond.notify_all()
                pending, pending_n = None, 0

    def _due(self) -> bool:
        if self._buffered == 0:
            return False
        return (
            self._buffered >= self.batch_rows
            or self._flush_waiters > 0
            or self._closing
            or time.monotonic() - self._oldest >= self.flush_interval_s
        )

    def _wait_s(self) -> float | None:
        if self._buffered == 0:
            return None
        return max(0.0, self._oldest + self.flush_interval_s - time.monotonic())


# ----------------------------------------------------------------------------------------------
# Read side


@runtime_checkable
class Store(Protocol):
    database: str

    def query_with_columns(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]: ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]: ...

    def count_final(self, table: str) -> int: ...

    def ensure_schema(self) -> None: ...

    def close(self) -> None: ...


class _StoreBase:
    database: str

    def query_with_columns(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        raise NotImplementedError

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows of ``sql``; ``params`` fill ``%(name)s`` placeholders, escaped (clickhouse-driver style)."""
        return self.query_with_columns(sql, params)[1]

    def count_final(self, table: str) -> int:
        """Rows of ``table`` after ReplacingMergeTree deduplication (``FINAL``)."""
        check_identifier(table)
        return int(self.query(f"SELECT count() FROM {self.database}.{table} FINAL")[0][0])

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # type: ignore[attr-defined]


class _UTCContext:
    """The bit of a clickhouse-driver context its escaping reads: the zone of DateTime literals."""

    class server_info:  # noqa: N801 - mirrors the driver's attribute name
        @staticmethod
        def get_timezone() -> str:
            return "UTC"


def substitute_params(sql: str, params: Mapping[str, Any] | None) -> str:
    """``%(name)s`` placeholders filled with escaped literals, as clickhouse-driver does."""
    if not params:
        return sql
    from clickhouse_driver.util.escape import escape_params

    return sql % escape_params(dict(params), _UTCContext)


class ChdbStore(_StoreBase):
    """Queries on the process's shared chdb session (results travel as Parquet: exact types)."""

    def __init__(self, path_or_session: str | Path | ChdbSession | Any, database: str = DEFAULT_DATABASE):
        self.database = check_identifier(database)
        self._chdb, self._owned = _as_chdb(path_or_session)

    def query_with_columns(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        try:
            data = self._chdb.query(substitute_params(sql, params), "Parquet").bytes()
        except Exception as exc:  # chdb raises bare RuntimeError-like errors
            raise StoreError(f"chdb query failed: {exc}") from exc
        if not data:  # a statement with no result set
            return [], []
        tbl = pq.read_table(pa.BufferReader(data))
        return list(tbl.column_names), _python_rows(tbl)

    def ensure_schema(self) -> None:
        ensure_schema(self.database, self._chdb.query, self.query)

    def close(self) -> None:
        if self._owned:
            self._owned = False
            self._chdb.release()


class ClickHouseStore(_StoreBase):
    """Queries on a ClickHouse server; one client, used by one thread at a time."""

    def __init__(
        self,
        host: str,
        port: int = 9000,
        database: str = DEFAULT_DATABASE,
        user: str = "default",
        password: str = "",
        connect_timeout_s: float = 5.0,
        send_receive_timeout_s: float = 60.0,
    ):

        self.database = check_identifier(database)
        self._client = clickhouse_client(
            host, port, user, password, connect_timeout_s, send_receive_timeout_s
        )
        self._lock = threading.Lock()

    def query_with_columns(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        from clickhouse_driver import errors as ch

        try:
            with self._lock:
                rows, columns = self._client.execute(sql, params or None, with_column_types=True)
        except (ch.Error, OSError, EOFError) as exc:
            raise StoreError(f"clickhouse query failed: {exc}") from exc
        return [name for name, _ in columns], [tuple(r) for r in rows]

    def ensure_schema(self) -> None:
        with self._lock:
            ensure_schema(self.database, self._client.execute, self._client.execute)

    def close(self) -> None:
        self._client.disconnect()


def open_store(url: str, *, create: bool = False) -> ChdbStore | ClickHouseStore:
    """A store for ``chdb:///abs/dir[?database=db]`` or ``clickhouse://[user[:pw]@]host[:port]/db``.

    ``create=True`` creates the database and tables first (``IF NOT EXISTS``).
    """
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    store: ChdbStore | ClickHouseStore
    if parts.scheme == "chdb":
        path = unquote(parts.netloc + parts.path)
        if not path.startswith("/"):
            raise StoreURLError(f"chdb store URL needs an absolute path (chdb:///abs/dir): {url!r}")
        store = ChdbStore(path, query.get("database", DEFAULT_DATABASE))
    elif parts.scheme == "clickhouse":
        if not parts.hostname:
            raise StoreURLError(f"clickhouse store URL needs a host (clickhouse://host:port/db): {url!r}")
        database = parts.path.strip("/") or DEFAULT_DATABASE
        store = ClickHouseStore(
            parts.hostname,
            parts.port or 9000,
            database,
            user=unquote(parts.username or "default"),
            password=unquote(parts.password or ""),
        )
    else:
        raise StoreURLError(f"store URL scheme must be chdb:// or clickhouse://, got {url!r}")
    if create:
        store.ensure_schema()
    return store


__all__ = [
    "ARROW_SCHEMAS",
    "ChdbPathInUse",
    "ChdbSession",
    "ChdbSink",
    "ChdbStore",
    "ClickHouseSink",
    "ClickHouseStore",
    "Sink",
    "SinkBackpressure",
    "SinkClosed",
    "SinkError",
    "SinkFailed",
    "SinkFlushTimeout",
    "SinkStats",
    "Store",
    "StoreError",
    "StoreURLError",
    "arrow_table",
    "chdb_session",
    "group_rows",
    "open_store",
    "substitute_params",
]
