"""Numbers as a marketer reads them: percentages, thousands separators, lifts; never scientific notation.
Every function returns "" for a missing value (None or NaN)."""

from __future__ import annotations

import math


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def percent(share) -> str:
    """0.1834 -> "18%", 0.0412 -> "4.1%" (one decimal below 10%), 0 -> "0%"."""
    if missing(share):
        return ""
    return f"{share:.0%}" if share >= 0.1 or share == 0 else f"{share:.1%}"


def count(value) -> str:
    """163592 -> "163,592"."""
    return "" if missing(value) else f"{round(value):,}"


def money(value, whole: bool = False) -> str:
    """163592.4 -> "163,592", 52.237 -> "52.24": whole units from 1,000 on (or always, for totals), cents below."""
    if missing(value):
        return ""
    return f"{value:,.0f}" if whole or abs(value) >= 1000 else f"{value:,.2f}"


def number(value, digits: int = 1) -> str:
    """A mean such as a frequency or a number of days, with ``digits`` decimals and thousands separators."""
    return "" if missing(value) else f"{value:,.{digits}f}"


def lift(value) -> str:
    """2.345 -> "×2.3": how many times the base's rate."""
    return "" if missing(value) else f"×{value:.1f}"
