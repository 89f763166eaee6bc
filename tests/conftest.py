"""Shared fixtures: real local services on free 127.0.0.1 ports, and unique names per test.

- ``clickhouse_server``: one clickhouse-server for the session (``.host``, ``.tcp_port``, ``.url``).
- ``kafka_broker``: one Tansu broker for the session (``.bootstrap``); memory storage. Consumer
  groups join slowly with default timeouts: Faust apps in tests set broker_session_timeout=6,
  broker_rebalance_timeout=5, broker_heartbeat_interval=1, and every test uses its own topic,
  group and app id (``unique_name``). Tansu has no idempotent producer / transactions.
- ``unique_name``: a fresh ``[a-z0-9_]`` suffix per test for databases, topics, app ids, groups.

Install the binaries with ``bash deploy/scripts/install_services.sh`` (``make test`` does). A
service that cannot start fails the test when ``CI`` is set and skips it, with the reason,
elsewhere. More fixtures build on ``streams.services`` the same way (see ``_service``).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from streams.services import ClickHouseService, ServiceError, TansuService, start_clickhouse, start_tansu

S = TypeVar("S", ClickHouseService, TansuService)


def _service(start: Callable[[], S], what: str) -> S:
    """Start a service, or fail loudly in CI / skip with the reason elsewhere."""
    try:
        return start()
    except ServiceError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{what} could not start in CI: {exc}", pytrace=False)
        pytest.skip(f"{what} unavailable ({exc}); run deploy/scripts/install_services.sh")


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseService]:
    svc = _service(lambda: start_clickhouse(tmp_path_factory.mktemp("clickhouse")), "clickhouse-server")
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuService]:
    svc = _service(lambda: start_tansu(tmp_path_factory.mktemp("tansu")), "tansu broker")
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """``<test name, 24 chars>_<8 hex>``: valid as a ClickHouse database, Kafka topic or group id."""
    stem = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:24] or "t"
    return f"{stem}_{uuid.uuid4().hex[:8]}"
