"""The HTTP API over an embedded ClickHouse (chdb) holding known rows: exact JSON out."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import pytest
from fastapi.testclient import TestClient

from schemas.events import SalesDaily
from schemas.outputs import ForecastAlert
from streams.api import create_app, store_url
from streams.sinks import ChdbSink, ClickHouseSink, StoreError, StoreURLError, open_store
from tests.factories import advice
from tests.factories import forecast as _forecast

DB = "liftstream"


def _alert(pid, target, rule, severity, current, emitted) -> ForecastAlert:
    t = date.fromisoformat(target)
    return ForecastAlert(
        product_id=pid,
        issued_day=date.fromordinal(t.toordinal() - 1),
        target_day=t,
        rule=rule,
        severity=severity,
        reference=20.0,
        current=current,
        drop_pct=100 * (20.0 - current) / 20.0,
        message=f"{pid} dropped",
        model_version="lamm-1",
        emitted_at=datetime.fromisoformat(emitted),
    )


NEXT = "2026-11-20 10:00:00"  # the fei-2 model's advice
OUTPUTS = [
    _forecast("p1", "2026-11-20", "provisional", 3, 10.0, 8.0, 12.0, 6.0, 2, "2026-11-19 18:00:00"),
    _forecast("p1", "2026-11-20", "day_close", 5, 12.0, 9.0, 15.0, 7.0, 2, "2026-11-20 00:05:00"),
    _forecast("p1", "2026-11-21", "provisional", 6, 13.0, 10.0, 16.0, 8.0, 3, "2026-11-20 09:00:00"),
    _forecast("p1", "2026-11-21", "provisional", 7, 14.5, 11.0, 17.0, 8.0, 3, "2026-11-20 12:00:00"),
    _forecast(
        "p1", "2026-11-21", "provisional", 7, 14.5, 11.0, 17.0, 8.0, 3, "2026-11-20 12:00:00"
    ),  # redelivered
    _forecast("p2", "2026-11-21", "day_close", 4, 30.0, 25.0, 35.0, None, 1, "2026-11-21 00:10:00"),
    _alert("p1", "2026-11-21", "pct_drop", "warning", 14.0, "2026-11-20 12:00:00"),
    _alert("p2", "2026-11-21", "below_band", "critical", 9.0, "2026-11-21 00:10:00"),
    _alert("p2", "2026-11-21", "below_band", "critical", 9.0, "2026-11-21 00:10:00"),  # redelivered
    advice("v1", "p1", "micro", "mid_tier", 100.0, 150.0, fei=0.75, version="fei-1"),
    advice("v1", "p1", "micro", "mid_tier", 100.0, 160.0, fei=0.5, version="fei-2", emitted=NEXT),  # newer
    advice(
        "v2", "p1", "nano", "mid_tier", 50.0, 80.0, followers=5_000, fei=1.25, version="fei-2", emitted=NEXT
    ),
    advice(
        "v3", "p1", "micro", "macro", 40.0, 40.5, followers=30_000, fei=1.0, version="fei-2", emitted=NEXT
    ),
]
SALES = [
    SalesDaily(event_id="s1", day=date(2026, 11, 20), product_id="p1", units=11, price=9.9, rating=4.8),
    SalesDaily(event_id="s2", day=date(2026, 11, 21), product_id="p2", units=40, price=5.0, rating=4.5),
]


# every test runs on the embedded store and on a real clickhouse-server, written by the real
# sinks of streams.sinks: the same JSON from both
@pytest.fixture(scope="module", params=["chdb", pytest.param("clickhouse", marks=pytest.mark.services)])
def store(request, tmp_path_factory):
    rows = OUTPUTS + SALES
    if request.param == "chdb":
        path = tmp_path_factory.mktemp("chdb-api")
        sink = ChdbSink(path, DB)
        sink.write(rows)
        sink.close()
        s = open_store(f"chdb://{path}?database={DB}")
    else:
        server = request.getfixturevalue("clickhouse_server")
        db = f"api_{uuid.uuid4().hex[:8]}"
        sink = ClickHouseSink(server.host, server.tcp_port, db)
        sink.write(rows)
        sink.close()
        s = open_store(f"{server.url}{db}")
    yield s
    s.close()


@pytest.fixture(scope="module")
def client(store):
    with TestClient(create_app(store)) as c:
        yield c


def test_health(client, store):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "database": store.database}


def test_latest_forecast(client):
    r = client.get("/products/p1/forecast")
    assert r.status_code == 200
    assert r.json() == {
        "product_id": "p1",
        "issued_day": "2026-11-20",
        "target_day": "2026-11-21",
        "kind": "provisional",
        "revision": 7,
        "point": 14.5,
        "lower": 11.0,
        "upper": 17.0,
        "level": 0.8,
        "baseline": 8.0,
        "lift": 6.5,
        "active_videos": 3,
        "model_version": "lamm-1",
        "emitted_at": "2026-11-20T12:00:00Z",
    }
    p2 = client.get("/products/p2/forecast").json()
    assert (p2["kind"], p2["point"], p2["baseline"], p2["lift"]) == ("day_close", 30.0, None, None)


def test_forecast_history_vs_actuals(client):
    r = client.get("/products/p1/forecasts")
    assert r.status_code == 200
    common = {"level": 0.8}
    assert r.json() == {
        "product_id": "p1",
        "from": None,
        "to": None,
        "forecasts": [
            common
            | {
                "target_day": "2026-11-20",
                "issued_day": "2026-11-19",
                "kind": "day_close",
                "revision": 5,
                "point": 12.0,
                "lower": 9.0,
                "upper": 15.0,
                "baseline": 7.0,
                "lift": 5.0,
                "active_videos": 2,
                "actual": 11.0,
                "error": -1.0,
                "covered": True,
            },
            common
            | {
                "target_day": "2026-11-21",
                "issued_day": "2026-11-20",
                "kind": "provisional",
                "revision": 7,
                "point": 14.5,
                "lower": 11.0,
                "upper": 17.0,
                "baseline": 8.0,
                "lift": 6.5,
                "active_videos": 3,
                "actual": None,
                "error": None,
                "covered": None,
            },
        ],
    }
    ranged = client.get("/products/p1/forecasts", params={"from": "2026-11-21", "to": "2026-11-30"}).json()
    assert (ranged["from"], ranged["to"]) == ("2026-11-21", "2026-11-30")
    assert [f["target_day"] for f in ranged["forecasts"]] == ["2026-11-21"]
    assert client.get("/products/p1/forecasts", params={"to": "2026-11-01"}).json()["forecasts"] == []
    p2 = client.get("/products/p2/forecasts").json()["forecasts"]
    assert [(f["actual"], f["error"], f["covered"]) for f in p2] == [(40.0, 10.0, False)]


def test_alerts(client):
    r = client.get("/alerts")
    assert r.status_code == 200
    body = r.json()
    assert (body["since"], body["product_id"], body["count"]) == (None, None, 2)
    assert body["alerts"][0] == {
        "product_id": "p2",
        "issued_day": "2026-11-20",
        "target_day": "2026-11-21",
        "rule": "below_band",
        "severity": "critical",
        "reference": 20.0,
        "current": 9.0,
        "drop_pct": 55.0,
        "message": "p2 dropped",
        "model_version": "lamm-1",
        "emitted_at": "2026-11-21T00:10:00Z",
    }
    assert body["alerts"][1]["product_id"] == "p1"
    since = client.get("/alerts", params={"since": "2026-11-21T00:00:00Z"}).json()
    assert (since["since"], [a["product_id"] for a in since["alerts"]]) == ("2026-11-21T00:00:00Z", ["p2"])
    # an offset is converted to UTC: 01:00+02:00 is 23:00 UTC of the day before
    offset = client.get("/alerts", params={"since": "2026-11-21T01:00:00+02:00"}).json()
    assert [a["product_id"] for a in offset["alerts"]] == ["p2"]
    by_product = client.get("/alerts", params={"product_id": "p1"}).json()
    assert [a["rule"] for a in by_product["alerts"]] == ["pct_drop"]
    assert client.get("/alerts", params={"product_id": "nope"}).json()["count"] == 0
    assert client.get("/alerts", params={"limit": 1}).json()["count"] == 1


def test_video_advice_takes_the_latest_model(client):
    r = client.get("/videos/v1/advice")
    assert r.status_code == 200
    assert r.json() == {
        "video_id": "v1",
        "product_id": "p1",
        "influencer_id": "inf-v1",
        "day": "2026-11-19",
        "followers": 20000,
        "tier": "micro",
        "fei": 0.5,
        "curve_shape": "s_shaped",
        "expected_impressions": 1000.0,
        "optimal_followers": 200000,
        "optimal_tier": "mid_tier",
        "optimal_followers_low": 120000,
        "optimal_followers_high": 350000,
        "expected_impressions_optimal": 4000.0,
        "profit_actual": 100.0,
        "profit_optimal": 160.0,
        "profit_gap": 60.0,
        "value_per_impression": 0.02,
        "cost_per_1k_followers": 5.0,
        "model_version": "fei-2",
        "emitted_at": "2026-11-20T10:00:00Z",
    }


def test_product_advice_summary(client):
    r = client.get("/products/p1/advice")
    assert r.status_code == 200
    assert r.json() == {
        "product_id": "p1",
        "videos": 3,
        "recommended_tier": "mid_tier",
        "profit_actual": 190.0,
        "profit_optimal": 280.5,
        "profit_gap": 90.5,
        "by_tier": [
            {
                "tier": "nano",
                "videos": 1,
                "mean_fei": 1.25,
                "profit_actual": 50.0,
                "profit_optimal": 80.0,
                "profit_gap": 30.0,
            },
            {
                "tier": "micro",
                "videos": 2,
                "mean_fei": 0.75,
                "profit_actual": 140.0,
                "profit_optimal": 200.5,
                "profit_gap": 60.5,
            },
        ],
        "optimal_tiers": [{"tier": "mid_tier", "videos": 2}, {"tier": "macro", "videos": 1}],
    }


@pytest.mark.parametrize(
    "path",
    ["/products/zz/forecast", "/products/zz/forecasts", "/videos/zz/advice", "/products/p2/advice"],
)
def test_unknown_ids_404(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert "zz" in r.json()["detail"] or "p2" in r.json()["detail"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/products/bad id!/forecast", {}),
        ("/products/" + "x" * 65 + "/forecast", {}),
        ("/products/p1/forecasts", {"from": "yesterday"}),
        ("/products/p1/forecasts", {"from": "2026-11-22", "to": "2026-11-21"}),
        ("/alerts", {"since": "not-a-time"}),
        ("/alerts", {"limit": 0}),
        ("/alerts", {"limit": 1001}),
        ("/alerts", {"product_id": "a'b"}),
        ("/videos/a'b/advice", {}),
    ],
)
def test_bad_params_422(client, path, params):
    assert client.get(path, params=params).status_code == 422


def test_openapi_lists_every_endpoint(client):
    spec = client.get("/openapi.json").json()
    assert sorted(spec["paths"]) == [
        "/alerts",
        "/health",
        "/products/{product_id}/advice",
        "/products/{product_id}/forecast",
        "/products/{product_id}/forecasts",
        "/videos/{video_id}/advice",
    ]
    assert spec["paths"]["/products/{product_id}/forecast"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"] == {"$ref": "#/components/schemas/Forecast"}


def test_store_down_is_503(tmp_path):
    class Down:
        database = DB

        def query_with_columns(self, sql, params=None):
            raise StoreError("connection refused")

    with TestClient(create_app(Down())) as c:
        r = c.get("/products/p1/forecast")
    assert (r.status_code, r.json()) == (503, {"detail": "store unavailable: connection refused"})


def test_store_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (
        store_url("chdb://.liftstream/chdb", "liftstream")
        == f"chdb://{tmp_path}/.liftstream/chdb?database=liftstream"
    )
    assert store_url("chdb:///data/ch?database=x", "liftstream") == "chdb:///data/ch?database=x"
    assert store_url("clickhouse://ch:9000/liftstream", "other") == "clickhouse://ch:9000/liftstream"
    with pytest.raises(StoreURLError):
        store_url("chdb://", "liftstream")
