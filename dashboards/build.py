"""Grafana dashboards and alert rules as code: build the JSON that Grafana provisions.

    python -m dashboards.build            # rewrite dashboards/json/*.json
    python -m dashboards.build --check    # exit 1 if the committed JSON is not what this code builds

Everything reads the ClickHouse tables of ``schemas.ddl`` through the ``grafana-clickhouse-datasource``
plugin. grafana-foundation-sdk has no query model for that plugin, so :class:`ClickHouseQuery` below is
a small Dataquery (raw SQL, table or time-series format) with its builder. Output rows live in
ReplacingMergeTree tables, so every query reads with ``FINAL`` or ``argMax`` (a redelivered row must
not count twice).

Files written (stable, sorted keys; uids are fixed so links and provisioning survive rebuilds):
  dashboards/json/liftstream-campaign.json   the live campaign monitoring dashboard
  dashboards/json/liftstream-alert-rules.json  Grafana alerting file provisioning (apiVersion 1)
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path

from grafana_foundation_sdk.builders import alerting as ab
from grafana_foundation_sdk.builders import bargauge, piechart, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import expr as eb
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as am
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import piechart as pm

JSON_DIR = Path(__file__).resolve().parent / "json"
DASHBOARD_FILE = "liftstream-campaign.json"
ALERT_RULES_FILE = "liftstream-alert-rules.json"

DATABASE = "liftstream"
DATASOURCE_TYPE = "grafana-clickhouse-datasource"
DATASOURCE_UID = "liftstream-clickhouse"  # provisioned with this uid (deploy/k8s, deploy/compose.yaml)
DASHBOARD_UID = "liftstream-campaign"
ALERT_FOLDER = "LiftStream"
ALERT_FOLDER_UID = "liftstream"

# alert rule thresholds (the rule titles and annotations say them too)
ALERT_LOOKBACK_MINUTES = 15  # forecast-drop alerts emitted in the last N minutes fire the rule
DEAD_LETTER_WINDOW_MINUTES = 10
DEAD_LETTER_MAX_PER_MINUTE = 5.0
NO_FORECAST_MINUTES = 30

DS = dm.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


# ----------------------------------------------------------------------------------------------
# The ClickHouse query model (grafana-clickhouse-datasource, SQL editor)


class ClickHouseDataquery(cogvariants.Dataquery):
    """One raw-SQL query of the ClickHouse plugin.

    ``format`` is what the plugin's backend (grafana/sqlds) reads: 0 time series, 1 table;
    ``queryType`` is what its query editor shows.
    """

    FORMATS: typing.ClassVar[dict[str, int]] = {"timeseries": 0, "table": 1}

    def __init__(
        self,
        ref_id: str = "A",
        raw_sql: str = "",
        query_type: typing.Literal["table", "timeseries"] = "table",
        datasource: dm.DataSourceRef | None = None,
        hide: bool | None = None,
    ) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.query_type = query_type
        self.datasource = datasource
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "editorType": "sql",
            "format": self.FORMATS[self.query_type],
            "queryType": self.query_type,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> ClickHouseDataquery:
        ds = data.get("datasource")
        return cls(
            ref_id=data.get("refId", "A"),
            raw_sql=data.get("rawSql", ""),
            query_type=data.get("queryType", "table"),
            datasource=dm.DataSourceRef.from_json(ds) if isinstance(ds, dict) else None,
            hide=data.get("hide"),
        )


class ClickHouseQuery(cogbuilder.Builder[ClickHouseDataquery]):
    def __init__(self, raw_sql: str, ref_id: str = "A") -> None:
        self._internal = ClickHouseDataquery(ref_id=ref_id, raw_sql=raw_sql.strip(), datasource=DS)

    def build(self) -> ClickHouseDataquery:
        return self._internal

    def time_series(self) -> typing.Self:
        self._internal.query_type = "timeseries"
        return self

    def table(self) -> typing.Self:
        self._internal.query_type = "table"
        return self


cogruntime.register_dataquery_variant(
    cogruntime.DataqueryConfig(identifier=DATASOURCE_TYPE, from_json_hook=ClickHouseDataquery.from_json)
)


# ----------------------------------------------------------------------------------------------
# SQL. Grafana macros of the plugin: $__timeFilter(col), $__dateFilter(col), $__timeInterval(col),
# $__conditionalAll(condition, $var) (1=1 when "All" is selected); ${var:singlequote} quotes values.

T = {
    name: f"{DATABASE}.{name}"
    for name in ("forecasts", "alerts", "advice", "dead_letters", "videos", "sales_daily")
}

PRODUCT_FILTER = "$__conditionalAll(product_id IN (${product:singlequote}), $product)"
CATEGORY_FILTER = (
    f"$__conditionalAll(product_id IN (SELECT product_id FROM {T['videos']} FINAL "
    "WHERE category IN (${category:singlequote})), $category)"
)
FILTERS = f"{PRODUCT_FILTER}\n  AND {CATEGORY_FILTER}"

# the forecast a product ends up with for a target day: day_close beats provisional, then the
# highest revision (events applied), then the latest emission
_BEST = "(kind = 'day_close', revision, emitted_at)"

SQL: dict[str, str] = {
    "var_category": f"SELECT DISTINCT category FROM {T['videos']} FINAL WHERE category != '' ORDER BY category",
    "var_product": f"""
SELECT DISTINCT product_id FROM {T["forecasts"]} FINAL
WHERE {CATEGORY_FILTER}
ORDER BY product_id""",
    "forecast_vs_actual": f"""
SELECT
  toDateTime(f.target_day, 'UTC') AS time,
  f.forecast AS forecast,
  f.lower AS lower,
  f.upper AS upper,
  s.units AS actual
FROM (
  SELECT product_id, target_day,
    argMax(point, {_BEST}) AS forecast,
    argMax(lower, {_BEST}) AS lower,
    argMax(upper, {_BEST}) AS upper
  FROM {T["forecasts"]} FINAL
  WHERE $__dateFilter(target_day) AND product_id IN (${{product:singlequote}})
  GROUP BY product_id, target_day
) AS f
LEFT JOIN (
  SELECT product_id, day, toNullable(toFloat64(units)) AS units
  FROM {T["sales_daily"]} FINAL
  WHERE $__dateFilter(day) AND product_id IN (${{product:singlequote}})
) AS s ON s.product_id = f.product_id AND s.day = f.target_day
ORDER BY time""",
    "sales_lift": f"""
SELECT toDateTime(target_day, 'UTC') AS time, product_id,
  argMax(point - baseline, {_BEST}) AS lift
FROM {T["forecasts"]} FINAL
WHERE $__dateFilter(target_day) AND baseline IS NOT NULL
  AND {FILTERS}
GROUP BY target_day, product_id
ORDER BY time, product_id""",
    "active_videos": f"""
SELECT sum(active) AS active_videos
FROM (
  SELECT product_id, argMax(active_videos, (target_day, {_BEST[1:-1]})) AS active
  FROM {T["forecasts"]} FINAL
  WHERE {FILTERS}
  GROUP BY product_id
)""",
    "top_products": f"""
SELECT product_id, latest_target_day AS target_day, forecast, lower, upper, lift
FROM (
  SELECT product_id,
    max(target_day) AS latest_target_day,
    argMax(point, (target_day, {_BEST[1:-1]})) AS forecast,
    argMax(lower, (target_day, {_BEST[1:-1]})) AS lower,
    argMax(upper, (target_day, {_BEST[1:-1]})) AS upper,
    argMax(point - baseline, (target_day, {_BEST[1:-1]})) AS lift
  FROM {T["forecasts"]} FINAL
  WHERE {FILTERS}
  GROUP BY product_id
)
ORDER BY forecast DESC, product_id
LIMIT 10""",
    "alerts_table": f"""
SELECT emitted_at, product_id, target_day, rule, severity, reference, current, drop_pct, message
FROM {T["alerts"]} FINAL
WHERE $__timeFilter(emitted_at) AND {FILTERS}
ORDER BY emitted_at DESC, product_id, rule
LIMIT 200""",
    "optimal_tiers": f"""
SELECT optimal_tier, count() AS videos
FROM {T["advice"]} FINAL
WHERE {FILTERS}
GROUP BY optimal_tier
ORDER BY videos DESC, optimal_tier""",
    "profit_gap": f"""
SELECT tier, sum(profit_optimal - profit_actual) AS profit_gap
FROM {T["advice"]} FINAL
WHERE {FILTERS}
GROUP BY tier
ORDER BY profit_gap DESC, tier""",
    "advice_table": f"""
SELECT video_id, product_id, followers, tier, optimal_followers, optimal_followers_low,
  optimal_followers_high, curve_shape, profit_optimal - profit_actual AS profit_gap
FROM {T["advice"]} FINAL
WHERE {FILTERS}
ORDER BY profit_gap DESC, video_id
LIMIT 100""",
    "dead_letter_rate": f"""
SELECT $__timeInterval(received_at) AS time, source, count() AS dead_letters
FROM {T["dead_letters"]} FINAL
WHERE $__timeFilter(received_at)
GROUP BY time, source
ORDER BY time, source""",
    "freshness": f"SELECT dateDiff('second', max(emitted_at), now()) AS freshness_s FROM {T['forecasts']}",
    # alert rules: one numeric row each, evaluated over the last minutes by Grafana's ruler
    "rule_alerts_present": f"""
SELECT count() AS alerts
FROM {T["alerts"]} FINAL
WHERE emitted_at >= now() - INTERVAL {ALERT_LOOKBACK_MINUTES} MINUTE""",
    "rule_dead_letter_rate": f"""
SELECT count() / {DEAD_LETTER_WINDOW_MINUTES} AS dead_letters_per_minute
FROM {T["dead_letters"]} FINAL
WHERE received_at >= now() - INTERVAL {DEAD_LETTER_WINDOW_MINUTES} MINUTE""",
    "rule_no_forecast": f"""
SELECT if(count() = 0, 1e9, toFloat64(dateDiff('second', max(emitted_at), now()))) AS seconds_since_forecast
FROM {T["forecasts"]}""",
}


# ----------------------------------------------------------------------------------------------
# Dashboard


def _thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def _pos(x: int, y: int, w: int, h: int) -> dm.GridPos:
    return dm.GridPos(x=x, y=y, w=w, h=h)


def _legend() -> cb.VizLegendOptions:
    return (
        cb.VizLegendOptions()
        .display_mode(cm.LegendDisplayMode.LIST)
        .placement(cm.LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def _variables() -> list[db.QueryVariable]:
    def var(name: str, label: str, sql: str) -> db.QueryVariable:
        return (
            db.QueryVariable(name)
            .label(label)
            .datasource(DS)
            .query(sql.strip())
            .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .current(dm.VariableOption(selected=True, text="All", value="$__all"))
        )

    return [var("category", "Category", SQL["var_category"]), var("product", "Product", SQL["var_product"])]


def build_dashboard() -> dm.Dashboard:
    forecast_vs_actual = (
        timeseries.Panel()
        .id(1)
        .title("Forecast vs actual: $product")
        .description(
            "Next-day units forecast (day_close beats provisional, then the latest revision) with its "
            "prediction interval as a band, against the units actually sold. One panel per product."
        )
        .datasource(DS)
        .with_target(ClickHouseQuery(SQL["forecast_vs_actual"]).time_series())
        .repeat("product")
        .repeat_direction("h")
        .grid_pos(_pos(0, 0, 12, 8))
        .unit("short")
        .line_width(2)
        .legend(_legend())
        .fill_opacity(0)
        .span_nulls(True)
        .override_by_name(
            "upper",
            [
                dm.DynamicConfigValue(id_val="custom.fillBelowTo", value="lower"),
                dm.DynamicConfigValue(id_val="custom.fillOpacity", value=20),
                dm.DynamicConfigValue(id_val="custom.lineWidth", value=0),
            ],
        )
        .override_by_name(
            "lower",
            [
                dm.DynamicConfigValue(id_val="custom.lineWidth", value=0),
                dm.DynamicConfigValue(
                    id_val="custom.hideFrom", value={"legend": True, "tooltip": False, "viz": False}
                ),
            ],
        )
        .override_by_name(
            "actual",
            [
                dm.DynamicConfigValue(id_val="custom.drawStyle", value="points"),
                dm.DynamicConfigValue(id_val="custom.pointSize", value=7),
            ],
        )
    )
    sales_lift = (
        timeseries.Panel()
        .id(2)
        .title("Sales lift (forecast - baseline)")
        .description("Units the active videos add to the next-day forecast: point - baseline, per product.")
        .datasource(DS)
        .with_target(ClickHouseQuery(SQL["sales_lift"]).time_series())
        .grid_pos(_pos(0, 8, 12, 8))
        .unit("short")
        .fill_opacity(10)
        .legend(_legend())
    )
    top_products = (
        table.Panel()
        .id(3)
        .title("Top products by forecast")
        .description("Latest forecast of each product (newest target day), highest first.")
        .datasource(DS)
        .with_target(ClickHouseQuery(SQL["top_products"]).table())
        .show_header(True)
        .grid_pos(_pos(12, 8, 12, 8))
        .decimals(1)
    )
    active = (
        stat.Panel()
        .id(4)
        .title("Active videos")
        .description("Videos inside their 14-day window, summed over products (latest forecast of each).")
        .datasource(DS)
        .with_target(ClickHouseQuery(SQL["active_videos"]).table())
        .grid_pos(_pos(0, 16, 4, 4))
        .unit("short")
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    freshness = (
        stat.Panel()
        .id(5)
        .title("Pipeline freshness")
        .description("now - max(emitted_at) of the forecasts table: how long since the stream last wrote.")
        .datasource(DS)
        .with_target(ClickHouseQuery(SQL["freshness"]).table())
        .grid_pos(_pos(4, 16, 4, 4))
        .unit("s")
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .thresholds(_thresholds((None, "green"), (300, "orange"), (NO_FORECAST_MINUTES * 60, "red")))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    dead_letters = (
        timeseries.Panel()
        .id(6)
        .title("Dead-letter rate")
        .description("Inputs that failed validation, per time bucket and source topic.")
        .datasource(DS)
        .with_target(ClickHouseQuery(SQL["dead_letter_rate"]).time_series())
        .grid_pos(_pos(8, 16, 16, 4))
        .unit("short")
        .draw_style(cm.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .legend(_legend())
    )
    alerts = (
        table.Panel()
        .id(7)
        .title("Forecast-drop alerts")
        .description(
            "Alerts in the time range: a forecast fell below the band or dropped against the trailing mean."
        )
        .datasource(DS)
        .with_target(ClickHouseQuery(SQL["alerts_table"]).table())
        .show_header(True)
        .grid_pos(_pos(0, 20, 24, 8))
        .override_by_name(
            "severity",
            [
                dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
                dm.DynamicConfigValue(
                    id_val="mappings",
                    value=[
                        {
                            "type": "value",
                            "options": {
                                "critical": {"color": "red", "index": 0},
                                "warning": {"color": "orange", "index": 1},
                            },
                        }
                    ],
                ),
            ],
        )
        .override_by_name("drop_pct", [dm.DynamicConfigValue(id_val="unit", value="percent")])
    )
    tiers = (
        piechart.Panel()
        .id(8)
        .title("Influencer advice: optimal tier")
        .description("How many videos' FEI curves advise each follower tier (FEI paper, Table 4 tiers).")
        .datasource(DS)
        .with_target(ClickHouseQuery(SQL["optimal_tiers"]).table())
        .grid_pos(_pos(0, 28, 12, 8))
        .pie_type(pm.PieChartType.DONUT)
        .legend(
            piechart.PieChartLegendOptions()
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.RIGHT)
            .show_legend(True)
            .values([pm.PieChartLegendValues.VALUE, pm.PieChartLegendValues.PERCENT])
        )
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(True))
    )
    gap = (
        bargauge.Panel()
        .id(9)
        .title("Influencer advice: profit gap by actual tier")
        .description(
            "Sum of profit_optimal - profit_actual: what sponsoring the advised tier would have added."
        )
        .datasource(DS)
        .with_target(ClickHouseQuery(SQL["profit_gap"]).table())
        .grid_pos(_pos(12, 28, 12, 8))
        .orientation(cm.VizOrientation.HORIZONTAL)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(True))
    )

    advice_table = (
        table.Panel()
        .id(10)
        .title("Influencer advice: videos with the largest profit gap")
        .description(
            "Per video: the follower count used, the advised one and the range of sizes whose expected "
            "profit is within 95% of the advised optimum's (optimal_followers_low .. _high)."
        )
        .datasource(DS)
        .with_target(ClickHouseQuery(SQL["advice_table"]).table())
        .show_header(True)
        .grid_pos(_pos(0, 36, 24, 8))
    )

    builder = (
        db.Dashboard("LiftStream: live campaign")
        .uid(DASHBOARD_UID)
        .description("Next-day sales-lift forecasts, forecast-drop alerts and influencer-size advice.")
        .tags(["liftstream", "isa"])
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .time("now-30d", "now")
        .refresh("1m")
        .timezone("utc")
        .variables(_variables())
    )
    for panel in (
        forecast_vs_actual,
        sales_lift,
        top_products,
        active,
        freshness,
        dead_letters,
        alerts,
        tiers,
        gap,
        advice_table,
    ):
        builder = builder.with_panel(panel)
    return builder.build()


# ----------------------------------------------------------------------------------------------
# Alert rules


def _rule(
    uid: str,
    title: str,
    sql: str,
    op: str,
    threshold: float,
    *,
    panel_id: int,
    for_: str,
    summary: str,
    severity: str,
    no_data: typing.Literal["Alerting", "NoData", "OK"] = "OK",
) -> ab.Rule:
    query = ab.Query("A").datasource_uid(DATASOURCE_UID).model(ClickHouseQuery(sql, ref_id="A").table())
    query = query.relative_time_range(am.RelativeTimeRange(from_val=600, to=0))
    reduce = (
        ab.Query("B")
        .datasource_uid("__expr__")
        .model(
            eb.TypeReduce()
            .ref_id("B")
            .expression("A")
            .reducer("last")
            .settings(eb.ExprTypeReduceSettings().mode("dropNN"))
        )
    )
    check = (
        ab.Query("C")
        .datasource_uid("__expr__")
        .model(
            eb.TypeThreshold()
            .ref_id("C")
            .expression("B")
            .conditions(
                [
                    eb.ExprTypeThresholdConditions().evaluator(
                        eb.ExprTypeThresholdConditionsEvaluator().type(op).params([threshold])  # type: ignore[arg-type]
                    )
                ]
            )
        )
    )
    return (
        ab.Rule(title)
        .uid(uid)
        .condition("C")
        .queries([query, reduce, check])
        .for_val(for_)
        .no_data_state(no_data)
        .exec_err_state("Error")
        .labels({"team": "ad-ops", "service": "liftstream", "severity": severity})
        .annotations({"summary": summary, "__dashboardUid__": DASHBOARD_UID, "__panelId__": str(panel_id)})
    )


def build_alert_rules() -> list[ab.Rule]:
    return [
        _rule(
            "liftstream-forecast-drop",
            "Forecast-drop alerts present",
            SQL["rule_alerts_present"],
            "gt",
            0,
            panel_id=7,
            for_="0s",
            summary=f"The stream emitted forecast-drop alerts in the last {ALERT_LOOKBACK_MINUTES} minutes: "
            "see the alerts table of the campaign dashboard.",
            severity="warning",
        ),
        _rule(
            "liftstream-dead-letter-rate",
            "Dead-letter rate high",
            SQL["rule_dead_letter_rate"],
            "gt",
            DEAD_LETTER_MAX_PER_MINUTE,
            panel_id=6,
            for_="5m",
            summary=f"More than {DEAD_LETTER_MAX_PER_MINUTE:g} inputs per minute went to the dead letters over the "
            f"last {DEAD_LETTER_WINDOW_MINUTES} minutes: a producer is sending bad events.",
            severity="critical",
        ),
        _rule(
            "liftstream-no-forecast",
            f"No forecast for {NO_FORECAST_MINUTES} minutes",
            SQL["rule_no_forecast"],
            "gt",
            NO_FORECAST_MINUTES * 60,
            panel_id=5,
            for_="0s",
            summary=f"No forecast was written for {NO_FORECAST_MINUTES} minutes: workers, Kafka or ClickHouse are down.",
            severity="critical",
            no_data="Alerting",
        ),
    ]


def alert_provisioning() -> dict[str, object]:
    """Grafana alerting file provisioning (``provisioning/alerting/*.json``, apiVersion 1)."""
    rules = []
    for rule in build_alert_rules():
        body = json.loads(json.dumps(rule.build(), cls=JSONEncoder))
        for key in ("folderUID", "orgID", "ruleGroup"):  # the group below carries them
            body.pop(key, None)
        rules.append(body)
    return {
        "apiVersion": 1,
        "groups": [
            {"orgId": 1, "name": "liftstream", "folder": ALERT_FOLDER, "interval": "1m", "rules": rules},
        ],
    }


# ----------------------------------------------------------------------------------------------
# Output


def render(obj: object) -> str:
    return json.dumps(obj, cls=JSONEncoder, sort_keys=True, indent=2) + "\n"


def outputs() -> dict[str, str]:
    """File name -> exact text of every generated file."""
    return {DASHBOARD_FILE: render(build_dashboard()), ALERT_RULES_FILE: render(alert_provisioning())}


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.build", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="verify the committed JSON is current; write nothing"
    )
    parser.add_argument("--out", type=Path, default=JSON_DIR, help="output folder (default dashboards/json)")
    args = parser.parse_args(argv)
    stale = []
    for name, text in outputs().items():
        path = args.out / name
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)}; run python -m dashboards.build", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
