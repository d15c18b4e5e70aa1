"""The report's tables as escaped HTML: the segments at a glance (name, description, value, forecast, lift
against the base) and the profile table split in two so that it fits a laptop screen, every number formatted
(percentages, thousands separators) and the channel mix drawn as small inline bars."""

from __future__ import annotations

import html
from collections.abc import Callable

import pyarrow as pa

from engine.segment.formats import count, lift, missing, money, number, percent
from engine.segment.profiles import read_channel_mix

MIX_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")

# (column, header, format) of the two profile tables; columns a profile lacks are left out
BEHAVIOUR = (
    ("segment", "segment", str),
    ("size", "customers", count),
    ("share", "share", percent),
    ("median_recency_days", "days since last event (median)", number),
    ("mean_frequency", "purchases per customer", number),
    ("mean_spend", "spend per customer", money),
    ("total_spend", "total spend", lambda v: money(v, whole=True)),
    ("mean_n_events", "events per customer", number),
    ("mean_tenure_days", "days as a customer (mean)", number),
    ("median_days_between_purchases", "days between purchases (median)", number),
    ("lapsing_share", "lapsing", percent),
    ("top_categories", "top categories", None),
    ("top_items", "top items", None),
)
FORECAST = (
    ("segment", "segment", str),
    ("channel_mix", "channel mix (customers by main channel)", None),
    ("mean_expected_purchases", "forecast purchases per customer", lambda v: number(v, 2)),
    ("mean_expected_spend", "forecast spend per customer", money),
    ("mean_p_alive", "still active (p_alive)", percent),
    ("mean_p_churn", "churn risk (mean p_churn)", percent),
    ("mean_likely_to_lapse", "likely to lapse (p_churn > 0.5)", percent),
    ("mean_lifetime_value", "lifetime value per customer", money),
    ("mean_predicted_spend", "predicted spend (value model)", money),
    ("mean_spend_known", "purchases with a known amount", percent),
)
# shown in the overview instead (or not a per-segment figure)
OVERVIEW_ONLY = {"name", "description", "value_tier", "distinctive_categories", "category_lift",
                 "distinctive_items", "item_lift", "distinctive_channels", "channel_lift", "spend_lift",
                 "frequency_lift", "mean_recency_days"}


def channel_colors(profiles: pa.Table) -> dict[str, str]:
    """One colour per channel, the same in every segment's bar: the most used channels first (the eighth and
    later share the last colour)."""
    total: dict[str, float] = {}
    for mix, size in zip(profiles.column("channel_mix").to_pylist(), profiles.column("size").to_pylist(),
                         strict=True):
        for name, share in read_channel_mix(mix).items():
            total[name] = total.get(name, 0.0) + share * size
    ranked = sorted(total, key=lambda name: (-total[name], name))
    return {name: MIX_COLORS[min(j, len(MIX_COLORS) - 1)] for j, name in enumerate(ranked)}


def channel_legend(colors: dict[str, str]) -> str:
    return '<p class="legend">' + " ".join(f'<span class="swatch" style="background:{c}"></span>{html.escape(name)}'
                                           for name, c in colors.items()) + "</p>"


def channel_bars(value, colors: dict[str, str]) -> str:
    """A channel_mix cell as one stacked CSS bar (largest share first, labelled where it fits; the tooltip
    lists every share)."""
    mix = sorted(read_channel_mix(value).items(), key=lambda item: -item[1])
    tip = html.escape(", ".join(f"{name} {percent(share)}" for name, share in mix))
    parts = "".join(f'<span style="width:{100 * share:.1f}%;background:{colors.get(name, MIX_COLORS[-1])}">'
                    f"{html.escape(name)} {percent(share)}</span>" for name, share in mix)
    return f'<div class="mix-bar" title="{tip}">{parts}</div>'


def _cell(value, fmt: Callable | None) -> str:
    if fmt is not None:
        return "" if missing(value) else html.escape(fmt(value))
    if isinstance(value, list):
        return html.escape(", ".join("" if v is None else str(v) for v in value))
    if isinstance(value, float):
        return number(value, 2)
    if isinstance(value, int) and not isinstance(value, bool):
        return count(value)
    return html.escape("" if value is None else str(value))


def table_html(headers: list[str], rows: list[list[str]], text_columns: set[int]) -> str:
    """A <table> of already escaped cells; text columns are left-aligned and wrap."""
    head = "".join(f'<th class="text">{html.escape(h)}</th>' if j in text_columns else f"<th>{html.escape(h)}</th>"
                   for j, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="text">{c}</td>' if j in text_columns else f"<td>{c}</td>"
                                    for j, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<table class="wide"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _lifted(names: list[str] | None, lifts: list[float] | None, n: int = 3) -> str:
    return html.escape(", ".join(f"{name.lower()} {lift(x)}" for name, x in
                                 list(zip(names or [], lifts or [], strict=True))[:n]))


def overview_html(profiles: pa.Table, descriptions: list[str], horizon_days: float | None) -> str:
    """One row per segment: its name and description, size, value tier, forecast revenue and churn risk (when
    forecast), and its lift against the base for categories, channels, spend and frequency."""
    forecast = "mean_expected_spend" in profiles.column_names
    over = f" (next {horizon_days:g} days)" if horizon_days else ""
    headers = ["#", "segment", "customers", "value tier",
               *([f"forecast revenue{over}", "churn risk", "likely to lapse"] if forecast else ["lapsing"]),
               "over-index on (lift)", "channels (lift)", "spend, frequency (lift)"]
    rows = []
    for p, description in zip(profiles.to_pylist(), descriptions, strict=True):
        name = f"<b>{html.escape(p['name'])}</b><br>" if p.get("name") else ""
        row = [str(p["segment"]), f'{name}<span class="desc">{html.escape(description)}</span>',
               f"{count(p['size'])}<br>{percent(p['share'])}", html.escape(p.get("value_tier") or "")]
        if forecast:
            revenue = p["mean_expected_spend"]
            row += [money(None if missing(revenue) else revenue * p["size"], whole=True),
                    percent(p.get("mean_p_churn")), percent(p.get("mean_likely_to_lapse"))]
        else:
            row.append(percent(p.get("lapsing_share")))
        row += [_lifted(p.get("distinctive_categories"), p.get("category_lift")),
                _lifted(p.get("distinctive_channels"), p.get("channel_lift")),
                "<br>".join(f'<span class="nw">{what} {lift(p.get(column))}</span>' for what, column in
                            (("spend", "spend_lift"), ("frequency", "frequency_lift")) if not missing(p.get(column)))]
        rows.append(row)
    text = {1, len(headers) - 3, len(headers) - 2}
    return table_html(headers, rows, text)


def profile_tables_html(profiles: pa.Table) -> str:
    """The profile in two tables of at most a dozen columns: behaviour so far, then channels and forecast
    (with any other mean_<extra> column of the profile appended)."""
    known = {column for column, _, _ in BEHAVIOUR + FORECAST}
    extra = tuple((c, c.replace("_", " "), None) for c in profiles.column_names
                  if c not in known and c not in OVERVIEW_ONLY)
    parts = []
    for title, spec in (("Behaviour so far", BEHAVIOUR), ("Channels and forecast", FORECAST + extra)):
        spec = [s for s in spec if s[0] in profiles.column_names]
        colors = channel_colors(profiles) if "channel_mix" in profiles.column_names else {}
        rows = [[channel_bars(p[c], colors) if c == "channel_mix" else _cell(p[c], fmt) for c, _, fmt in spec]
                for p in profiles.to_pylist()]
        text = {j for j, (c, _, _) in enumerate(spec) if c in ("top_categories", "top_items", "channel_mix")}
        legend = channel_legend(colors) if any(c == "channel_mix" for c, _, _ in spec) else ""
        parts.append(f"<h3>{title}</h3>{legend}" + table_html([h for _, h, _ in spec], rows, text))
    return "".join(parts)

