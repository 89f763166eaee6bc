"""The run report: a printed summary and an HTML page with plots, read back from ClickHouse.

Everything here is computed from what the stream wrote (forecasts, alerts, advice, dead letters,
and the input tables for actuals), so the report shows what a dashboard user would see.
``write_report(store, database, out_dir, run)`` returns the printed summary.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from schemas import limits as L  # noqa: E402


def _q(store, sql: str) -> list[tuple]:
    return [tuple(r) for r in store.query(sql)]


def _history_days(dataset: Path | None) -> int | None:
    if dataset is None or not (Path(dataset) / "meta.json").exists():
        return None
    return json.loads((Path(dataset) / "meta.json").read_text()).get("history_days")


def forecast_outcomes(store, db: str, since: str | None = None) -> np.ndarray:
    """(n, 5) float64 rows of day-close forecasts whose target day has sales: target day (days
    since 1970-01-01), point, lower, upper, actual units (ordered by target day)."""
    where = f"AND f.target_day >= toDate('{since}')" if since else ""
    rows = _q(
        store,
        f"""
        SELECT toInt32(f.target_day) AS d, f.point, f.lower, f.upper, s.units
        FROM (SELECT product_id, target_day, point, lower, upper FROM {db}.forecasts FINAL WHERE kind = 'day_close') AS f
        INNER JOIN (SELECT product_id, day, units FROM {db}.sales_daily FINAL) AS s
          ON f.product_id = s.product_id AND f.target_day = s.day
        WHERE 1 {where}
        ORDER BY d, f.product_id""",
    )
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def accuracy(store, db: str, since: str | None = None) -> dict:
    """Day-close forecasts against the actual units of their target day."""
    a = forecast_outcomes(store, db, since)
    if not len(a):
        return {"n": 0}
    _, point, lower, upper, y = a.T
    err = point - y
    nz = y > 0
    return {
        "n": int(len(a)),
        "mae_units": float(np.abs(err).mean()),
        "rmse_units": float(np.sqrt((err**2).mean())),
        "mape": float(np.abs(err[nz] / y[nz]).mean()) if nz.any() else float("nan"),
        "mae_log1p": float(np.abs(np.log1p(point) - np.log1p(y)).mean()),
        "coverage": float(((y >= lower) & (y <= upper)).mean()),
    }


def _plot_products(store, db: str, out: Path, n: int = 6) -> Path:
    top = [
        r[0]
        for r in _q(
            store,
            f"""
        SELECT product_id FROM {db}.sales_daily FINAL GROUP BY product_id ORDER BY sum(units) DESC LIMIT {n}""",
        )
    ]
    fig, axes = plt.subplots(2, 3, figsize=(15, 7), squeeze=False)
    for ax, pid in zip(axes.flat, top, strict=False):
        act = _q(
            store, f"SELECT day, units FROM {db}.sales_daily FINAL WHERE product_id = '{pid}' ORDER BY day"
        )
        fc = _q(
            store,
            f"""SELECT target_day, point, lower, upper FROM {db}.forecasts FINAL
                           WHERE product_id = '{pid}' AND kind = 'day_close' ORDER BY target_day""",
        )
        al = _q(store, f"SELECT target_day, current FROM {db}.alerts FINAL WHERE product_id = '{pid}'")
        if act:
            d, u = zip(*act, strict=True)
            ax.plot(d, u, "k.-", label="actual units")
        if fc:
            d, p, lo, hi = zip(*fc, strict=True)
            ax.plot(d, p, "C0-", label="forecast (day close)")
            ax.fill_between(d, lo, hi, color="C0", alpha=0.2, label="80% interval")
        if al:
            d, c = zip(*al, strict=True)
            ax.plot(d, c, "rv", ms=9, label="drop alert")
        ax.set_title(pid)
        ax.tick_params(axis="x", rotation=30)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Next-day forecasts vs actual units, top products by sales")
    fig.tight_layout()
    path = out / "forecast_vs_actual.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plot_alerts_advice(store, db: str, out: Path) -> Path:
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(16, 4.5))
    rows = _q(
        store,
        f"SELECT issued_day, severity, count() FROM {db}.alerts FINAL GROUP BY issued_day, severity ORDER BY issued_day",
    )
    days = sorted({r[0] for r in rows})
    for sev, color in (("warning", "C1"), ("critical", "C3")):
        cnt = {r[0]: r[2] for r in rows if r[1] == sev}
        a1.bar(
            [str(d) for d in days],
            [cnt.get(d, 0) for d in days],
            color=color,
            label=sev,
            bottom=[0] * len(days)
            if sev == "warning"
            else [sum(r[2] for r in rows if r[0] == d and r[1] == "warning") for d in days],
        )
    a1.set_title("forecast-drop alerts per day")
    a1.tick_params(axis="x", rotation=60, labelsize=7)
    a1.legend()
    tiers = [t[0] for t in L.FOLLOWER_TIERS]
    act = dict(_q(store, f"SELECT tier, count() FROM {db}.advice FINAL GROUP BY tier"))
    opt = dict(_q(store, f"SELECT optimal_tier, count() FROM {db}.advice FINAL GROUP BY optimal_tier"))
    x = np.arange(len(tiers))
    a2.bar(x - 0.2, [act.get(t, 0) for t in tiers], 0.4, label="influencer used")
    a2.bar(x + 0.2, [opt.get(t, 0) for t in tiers], 0.4, label="advised optimum")
    a2.set_xticks(x, tiers, rotation=30)
    a2.set_title("follower tier: used vs advised")
    a2.legend()
    gap = _q(store, f"SELECT profit_optimal - profit_actual FROM {db}.advice FINAL")
    if gap:
        g = np.array([r[0] for r in gap])
        a3.hist(np.sign(g) * np.log10(1 + np.abs(g)), bins=40, color="C2")
    a3.set_title("profit gap (optimal - actual), sign*log10(1+|x|)")
    fig.tight_layout()
    path = out / "alerts_advice.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(store, db: str, out: Path, run) -> str:
    out.mkdir(parents=True, exist_ok=True)
    tables = ["videos", "engagement_daily", "sales_daily", "forecasts", "alerts", "advice", "dead_letters"]
    counts = {t: _q(store, f"SELECT count() FROM {db}.{t} FINAL")[0][0] for t in tables}
    hist = _history_days(run.dataset)
    live_since = None
    if hist is not None:
        first = _q(store, f"SELECT min(day) FROM {db}.sales_daily FINAL")[0][0]
        live_since = str(np.datetime64(first) + np.timedelta64(hist, "D"))
    acc_all = accuracy(store, db)
    acc_live = accuracy(store, db, live_since) if live_since else None
    sev = dict(_q(store, f"SELECT severity, count() FROM {db}.alerts FINAL GROUP BY severity"))
    shapes = dict(_q(store, f"SELECT curve_shape, count() FROM {db}.advice FINAL GROUP BY curve_shape"))
    dlq = dict(_q(store, f"SELECT error_type, count() FROM {db}.dead_letters FINAL GROUP BY error_type"))
    adv = _q(
        store,
        "SELECT avg(profit_optimal >= profit_actual), median(optimal_followers), median(followers), "
        "medianIf(log10(optimal_followers_high / optimal_followers_low), optimal_followers_low > 0) "
        f"FROM {db}.advice FINAL",
    )[0]

    lines = [
        "LiftStream run summary",
        f"  models            forecaster {run.model_version}, advisor {run.advice_version}",
        f"  events            {run.n_events:,} in {run.seconds:.1f} s ({run.events_per_s:,.0f}/s)",
        "  processed         " + ", ".join(f"{k} {v:,}" for k, v in sorted(run.counts.items())),
        "  rows (FINAL)      " + ", ".join(f"{t} {counts[t]:,}" for t in tables),
    ]
    for name, acc in (("all days", acc_all), (f"live days (from {live_since})", acc_live)):
        if acc and acc.get("n"):
            lines.append(
                f"  accuracy, {name}: n={acc['n']:,} MAE={acc['mae_units']:.2f} units, MAPE={acc['mape']:.1%}, "
                f"MAE(log1p)={acc['mae_log1p']:.3f}, 80% interval coverage={acc['coverage']:.1%}"
            )
    lines.append("  alerts            " + (", ".join(f"{k} {v}" for k, v in sev.items()) or "none"))
    lines.append("  advice shapes     " + (", ".join(f"{k} {v}" for k, v in shapes.items()) or "none"))
    if counts["advice"]:
        lines.append(
            f"  advice            median followers used {adv[2]:,.0f}, median advised {adv[1]:,.0f} "
            f"(sizes within 95% of its profit span a median {adv[3]:.2f} decades)"
        )
    lines.append("  dead letters      " + (", ".join(f"{k} {v}" for k, v in dlq.items()) or "none"))
    summary = "\n".join(lines)

    p1 = _plot_products(store, db, out)
    p2 = _plot_alerts_advice(store, db, out)
    alerts = _q(
        store,
        f"""SELECT issued_day, product_id, severity, rule, round(drop_pct * 100, 1), message
                           FROM {db}.alerts FINAL ORDER BY issued_day DESC, drop_pct DESC LIMIT 25""",
    )
    rows_html = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in alerts
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>LiftStream run report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}} pre{{background:#f4f4f4;padding:1em}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}</style></head><body>
<h1>LiftStream run report</h1>
<pre>{html.escape(summary)}</pre>
<h2>Forecasts vs actuals</h2><img src="{p1.name}" width="100%">
<h2>Alerts and influencer advice</h2><img src="{p2.name}" width="100%">
<h2>Latest forecast-drop alerts</h2>
<table><tr><th>issued</th><th>product</th><th>severity</th><th>rule</th><th>drop %</th><th>message</th></tr>{rows_html}</table>
<p>Store: {html.escape(run.store_url)} database <code>{html.escape(db)}</code>. Query it with
<code>python -c "import chdb; ..."</code> or point Grafana at a ClickHouse server fed by the worker.</p>
</body></html>"""
    (out / "report.html").write_text(page)
    (out / "summary.json").write_text(
        json.dumps(
            {
                "counts": counts,
                "accuracy_all": acc_all,
                "accuracy_live": acc_live,
                "alerts": sev,
                "advice_shapes": shapes,
                "dead_letters": dlq,
            },
            indent=2,
            default=str,
        )
    )
    return summary
