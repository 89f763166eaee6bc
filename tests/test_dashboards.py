"""The committed Grafana JSON is current, and every SQL query in it runs on the real schema.

Each query of the dashboard (panels and template variables) and of the alert rules is taken from
the committed JSON, its Grafana macros and variables are replaced the way the ClickHouse plugin
does, and it runs on an embedded ClickHouse (chdb) built with ``schemas.ddl.create_all`` and a few
known rows; the rows it returns are compared exactly.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from functools import partial

import pytest

from dashboards import build
from schemas.ddl import COLUMNS, create_all, row_of
from schemas.outputs import DeadLetter, ForecastAlert, SalesLiftForecast
from streams.sinks import chdb_session
from tests.factories import advice, forecast

DB = build.DATABASE
FROM, TO = "2026-11-01 00:00:00", "2026-11-21 00:20:00"
NOW = TO  # now() of the queries, pinned so freshness and rule windows are exact
INTERVAL_S = 60  # $__timeInterval bucket


# ----------------------------------------------------------------------------------------------
# Grafana macro / variable substitution (as the grafana-clickhouse-datasource plugin does it)


def _macro_args(sql: str, open_at: int) -> tuple[list[str], int]:
    """Arguments of the macro whose '(' is at open_at (nested parentheses kept), and the ')' index."""
    depth, args, start = 0, [], open_at + 1
    for i in range(open_at, len(sql)):
        ch = sql[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:i])
                return [a.strip() for a in args], i
        elif ch == "," and depth == 1:
            args.append(sql[start:i])
            start = i + 1
    raise ValueError(f"unbalanced macro in {sql!r}")


def _replace_macro(sql: str, name: str, fn) -> str:
    token = f"$__{name}("
    while (at := sql.rfind(token)) != -1:
        args, end = _macro_args(sql, at + len(token) - 1)
        sql = sql[:at] + fn(*args) + sql[end + 1 :]
    return sql


def grafana_substitute(sql: str, variables: dict[str, list[str] | None]) -> str:
    """variables: name -> selected values, or None for "All"."""

    def conditional_all(condition: str, var: str) -> str:
        return "1=1" if variables[var.lstrip("$")] is None else condition

    sql = _replace_macro(sql, "conditionalAll", conditional_all)
    for name, values in variables.items():
        if values is None:  # "All" without a custom all value: every option of the variable
            values = ALL_VALUES[name]
        sql = sql.replace(f"${{{name}:singlequote}}", ",".join(f"'{v}'" for v in values))
    sql = _replace_macro(
        sql, "timeFilter", lambda c: f"{c} >= toDateTime('{FROM}') AND {c} <= toDateTime('{TO}')"
    )
    sql = _replace_macro(
        sql, "dateFilter", lambda c: f"{c} >= toDate('{FROM[:10]}') AND {c} <= toDate('{TO[:10]}')"
    )
    sql = _replace_macro(
        sql, "timeInterval", lambda c: f"toStartOfInterval(toDateTime({c}), INTERVAL {INTERVAL_S} second)"
    )
    sql = sql.replace("now()", f"toDateTime('{NOW}')")
    assert "$" not in sql, f"unsubstituted Grafana syntax left in {sql!r}"
    return sql


ALL_VALUES = {"category": ["beauty_skincare", "toys_games"], "product": ["p1", "p2"]}


# ----------------------------------------------------------------------------------------------
# A ClickHouse with the real DDL and known rows


def _dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


def _forecast(*args) -> SalesLiftForecast:
    return forecast(*args, version="lamm-test")


# advice for day 2026-11-20 (the dashboards' time range)
_advice = partial(advice, day="2026-11-20", impressions_optimal=5000.0, emitted="2026-11-20 10:00:00")


def _alert(pid, rule, severity, current, emitted) -> ForecastAlert:
    return ForecastAlert(
        product_id=pid,
        issued_day=date(2026, 11, 20),
        target_day=date(2026, 11, 21),
        rule=rule,
        severity=severity,
        reference=20.0,
        current=current,
        drop_pct=round(100 * (20.0 - current) / 20.0, 1),
        message=f"{pid} forecast dropped",
        model_version="lamm-test",
        emitted_at=_dt(emitted),
    )


def _dead(raw: str, at: str) -> DeadLetter:
    return DeadLetter.from_raw(
        raw, source="liftstream.events", error_type="ValidationError", error="bad", received_at=_dt(at)
    )


FORECASTS = [
    _forecast("p1", "2026-11-20", "provisional", 3, 10.0, 8.0, 12.0, 6.0, 2, "2026-11-19 18:00:00"),
    _forecast("p1", "2026-11-20", "day_close", 5, 12.0, 9.0, 15.0, 7.0, 2, "2026-11-20 00:05:00"),
    _forecast("p1", "2026-11-21", "provisional", 7, 14.0, 11.0, 17.0, 8.0, 3, "2026-11-20 12:00:00"),
    _forecast(
        "p1", "2026-11-21", "provisional", 7, 14.0, 11.0, 17.0, 8.0, 3, "2026-11-20 12:00:00"
    ),  # redelivered
    _forecast("p2", "2026-11-21", "day_close", 4, 30.0, 25.0, 35.0, None, 1, "2026-11-21 00:10:00"),
]
ROWS = {
    "forecasts": [row_of(f)[1] for f in FORECASTS],
    "alerts": [
        row_of(_alert("p1", "pct_drop", "warning", 14.0, "2026-11-20 12:00:00"))[1],
        row_of(_alert("p2", "below_band", "critical", 9.0, "2026-11-21 00:10:00"))[1],
    ],
    "advice": [
        row_of(_advice("v1", "p1", "micro", "mid_tier", 100.0, 150.0))[1],
        row_of(_advice("v2", "p1", "nano", "mid_tier", 50.0, 80.0))[1],
        row_of(_advice("v3", "p2", "mega", "macro", 500.0, 520.0))[1],
    ],
    "dead_letters": [
        row_of(_dead("{", "2026-10-01 00:00:00"))[1],  # before the time range
        row_of(_dead("{a", "2026-11-21 00:00:10"))[1],
        row_of(_dead("{b", "2026-11-21 00:00:50"))[1],
        row_of(_dead("{c", "2026-11-21 00:02:00"))[1],
        row_of(_dead("{c", "2026-11-21 00:02:00"))[1],  # redelivered: same dlq_id
        row_of(_dead("{d", "2026-11-21 00:15:00"))[1],
    ],
    "sales_daily": [
        ("s1", "p1", date(2026, 11, 20), 11, 9.9, 4.8),
        ("s2", "p2", date(2026, 11, 21), 28, 5.0, 4.5),
    ],
}


def _video(vid: str, pid: str, category: str) -> tuple:
    values = {c: "" for c in COLUMNS["videos"]}
    values.update(
        event_id=f"e-{vid}", video_id=vid, product_id=pid, influencer_id=f"i-{vid}", day=date(2026, 11, 19),
        ts=datetime(2026, 11, 19, 8), followers=20_000, past_avg_hearts=30.0, verified=0, city_tier="first",
        age=None, category=category, price=9.9, video_type="food", length_s=30.0, width=720, height=1280,
        size_mb=4.0, create_hour=8, n_segments=10,
    )  # fmt: skip
    return tuple(values[c] for c in COLUMNS["videos"])


ROWS["videos"] = [
    _video("v1", "p1", "beauty_skincare"),
    _video("v2", "p1", "beauty_skincare"),
    _video("v3", "p2", "toys_games"),
]


def _literal(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, str):
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(v, datetime):
        return f"'{v:%Y-%m-%d %H:%M:%S}'"
    if isinstance(v, date):
        return f"'{v.isoformat()}'"
    return repr(v)


@pytest.fixture(scope="module")
def ch(tmp_path_factory):
    # the process's shared chdb session (chdb keeps one data path per process)
    sess = chdb_session(tmp_path_factory.mktemp("chdb-dash"))
    for stmt in create_all(DB):
        sess.query(stmt)
    for table, rows in ROWS.items():
        values = ",".join("(" + ",".join(map(_literal, r)) + ")" for r in rows)
        sess.query(f"INSERT INTO {DB}.{table} ({','.join(COLUMNS[table])}) VALUES {values}")
    yield sess
    sess.release()


def run(ch, sql: str, **variables) -> list[list[str]]:
    vars_ = {"product": None, "category": None} | variables
    out = ch.query(grafana_substitute(sql, vars_), "TabSeparated").bytes().decode()
    return [line.split("\t") for line in out.splitlines()]


# ----------------------------------------------------------------------------------------------
# The committed JSON


def _committed(name: str) -> dict:
    return json.loads((build.JSON_DIR / name).read_text())


DASH = _committed(build.DASHBOARD_FILE)
RULES = {r["uid"]: r for r in _committed(build.ALERT_RULES_FILE)["groups"][0]["rules"]}
PANELS = {p["title"]: p for p in DASH["panels"]}
VARS = {v["name"]: v for v in DASH["templating"]["list"]}


def panel_sql(title: str) -> str:
    (target,) = PANELS[title]["targets"]
    return target["rawSql"]


def rule_sql(uid: str) -> str:
    return RULES[uid]["data"][0]["model"]["rawSql"]


def test_committed_json_is_current():
    for name, text in build.outputs().items():
        assert (build.JSON_DIR / name).read_text() == text, f"{name} is stale: run python -m dashboards.build"
    assert build.cli(["--check"]) == 0


def test_check_flags_stale_json(tmp_path, capsys):
    assert build.cli(["--out", str(tmp_path)]) == 0
    (tmp_path / build.DASHBOARD_FILE).write_text("{}\n")
    assert build.cli(["--check", "--out", str(tmp_path)]) == 1
    assert "stale: liftstream-campaign.json" in capsys.readouterr().err


def test_json_is_sorted_and_uids_stable():
    text = (build.JSON_DIR / build.DASHBOARD_FILE).read_text()
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"
    assert DASH["uid"] == "liftstream-campaign"
    assert sorted(RULES) == [
        "liftstream-dead-letter-rate",
        "liftstream-forecast-drop",
        "liftstream-no-forecast",
    ]
    assert sorted(VARS) == ["category", "product"]
    assert [p["id"] for p in DASH["panels"]] == list(range(1, 11))
    targets = [t for p in DASH["panels"] for t in p["targets"]] + [
        r["data"][0]["model"] for r in RULES.values()
    ]
    for t in targets:
        assert t["datasource"] == {"type": "grafana-clickhouse-datasource", "uid": "liftstream-clickhouse"}
        assert t["editorType"] == "sql" and t["format"] == {"timeseries": 0, "table": 1}[t["queryType"]]
    for rule in RULES.values():
        assert rule["condition"] == "C" and rule["data"][0]["datasourceUid"] == "liftstream-clickhouse"
        assert rule["annotations"]["__dashboardUid__"] == "liftstream-campaign"


def test_every_query_is_tested():
    # a new panel or rule must come with its expected rows below
    assert sorted(PANELS) == sorted(EXPECTED_PANELS)
    assert sorted(RULES) == sorted(EXPECTED_RULES)


def test_variables(ch):
    assert run(ch, VARS["category"]["query"]) == [["beauty_skincare"], ["toys_games"]]
    assert run(ch, VARS["product"]["query"]) == [["p1"], ["p2"]]
    assert run(ch, VARS["product"]["query"], category=["toys_games"]) == [["p2"]]


N = "\\N"
EXPECTED_PANELS = {
    "Forecast vs actual: $product": (
        {"product": ["p1"]},
        [["2026-11-20 00:00:00", "12", "9", "15", "11"], ["2026-11-21 00:00:00", "14", "11", "17", N]],
    ),
    "Sales lift (forecast - baseline)": (
        {},
        [["2026-11-20 00:00:00", "p1", "5"], ["2026-11-21 00:00:00", "p1", "6"]],
    ),
    "Top products by forecast": (
        {},
        [["p2", "2026-11-21", "30", "25", "35", N], ["p1", "2026-11-21", "14", "11", "17", "6"]],
    ),
    "Active videos": ({}, [["4"]]),
    "Pipeline freshness": ({}, [["600"]]),
    "Dead-letter rate": (
        {},
        [
            ["2026-11-21 00:00:00", "liftstream.events", "2"],
            ["2026-11-21 00:02:00", "liftstream.events", "1"],
            ["2026-11-21 00:15:00", "liftstream.events", "1"],
        ],
    ),
    "Forecast-drop alerts": (
        {},
        [
            [
                "2026-11-21 00:10:00",
                "p2",
                "2026-11-21",
                "below_band",
                "critical",
                "20",
                "9",
                "55",
                "p2 forecast dropped",
            ],
            [
                "2026-11-20 12:00:00",
                "p1",
                "2026-11-21",
                "pct_drop",
                "warning",
                "20",
                "14",
                "30",
                "p1 forecast dropped",
            ],
        ],
    ),
    "Influencer advice: optimal tier": ({}, [["mid_tier", "2"], ["macro", "1"]]),
    "Influencer advice: profit gap by actual tier": ({}, [["micro", "50"], ["nano", "30"], ["mega", "20"]]),
    "Influencer advice: videos with the largest profit gap": (
        {},
        [
            ["v1", "p1", "20000", "micro", "200000", "120000", "350000", "s_shaped", "50"],
            ["v2", "p1", "20000", "nano", "200000", "120000", "350000", "s_shaped", "30"],
            ["v3", "p2", "20000", "mega", "200000", "120000", "350000", "s_shaped", "20"],
        ],
    ),
}
EXPECTED_RULES = {
    "liftstream-forecast-drop": [["1"]],  # p2's alert at 00:10 is inside the 15 minutes before 00:20
    "liftstream-dead-letter-rate": [["0.1"]],  # one dead letter in the last 10 minutes
    "liftstream-no-forecast": [["600"]],
}


@pytest.mark.parametrize("title", sorted(EXPECTED_PANELS))
def test_panel_query_rows(ch, title):
    variables, rows = EXPECTED_PANELS[title]
    assert run(ch, panel_sql(title), **variables) == rows


@pytest.mark.parametrize("uid", sorted(EXPECTED_RULES))
def test_alert_rule_query_rows(ch, uid):
    assert run(ch, rule_sql(uid)) == EXPECTED_RULES[uid]


def test_filters_narrow_every_filtered_panel(ch):
    assert run(ch, panel_sql("Sales lift (forecast - baseline)"), product=["p2"]) == []
    assert run(ch, panel_sql("Top products by forecast"), category=["beauty_skincare"]) == [
        ["p1", "2026-11-21", "14", "11", "17", "6"]
    ]
    assert run(ch, panel_sql("Active videos"), product=["p2"]) == [["1"]]
    assert [r[1] for r in run(ch, panel_sql("Forecast-drop alerts"), category=["toys_games"])] == ["p2"]
    assert run(ch, panel_sql("Influencer advice: optimal tier"), product=["p2"]) == [["macro", "1"]]
    assert run(
        ch, panel_sql("Influencer advice: profit gap by actual tier"), category=["beauty_skincare"]
    ) == [
        ["micro", "50"],
        ["nano", "30"],
    ]
    assert run(ch, panel_sql("Forecast vs actual: $product"), product=["p2"]) == [
        ["2026-11-21 00:00:00", "30", "25", "35", "28"]
    ]


def test_no_forecast_rule_fires_on_an_empty_table(ch):
    # an empty forecasts table must alert too (count() = 0 -> a huge age), not evaluate to NULL
    sql = rule_sql("liftstream-no-forecast").replace(f"{DB}.forecasts", f"{DB}.forecasts WHERE 0")
    assert run(ch, sql) == [["1000000000"]]


def test_macro_substitution_handles_nesting():
    sql = "SELECT 1 WHERE $__conditionalAll(a IN (SELECT b FROM t WHERE c IN (${category:singlequote})), $category)"
    assert grafana_substitute(sql, {"category": ["x"], "product": None}) == (
        "SELECT 1 WHERE a IN (SELECT b FROM t WHERE c IN ('x'))"
    )
    assert grafana_substitute(sql, {"category": None, "product": None}) == "SELECT 1 WHERE 1=1"
    assert re.fullmatch(r"[^$]*", grafana_substitute("SELECT $__timeFilter(ts)", {}))


def test_sdk_reads_the_json_back():
    # the committed JSON decodes into the SDK's models, targets into our ClickHouse Dataquery
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()
    board = Dashboard.from_json(DASH)
    assert board.uid == "liftstream-campaign" and len(board.panels) == 10
    for panel, raw in zip(board.panels, DASH["panels"], strict=True):
        (target,) = panel.targets
        assert isinstance(target, build.ClickHouseDataquery)
        assert json.loads(json.dumps(target, cls=JSONEncoder)) == raw["targets"][0]
