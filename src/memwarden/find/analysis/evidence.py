"""Phrases and RSS checks shared by the heap verdicts.

RSS is the weaker witness (allocator high-water marks move it in runs
without a leak): it sizes a leak the heap has found, and calls one alone
only past a large absolute rise.
"""

from __future__ import annotations

from memwarden.find.analysis.config import AnalysisConfig
from memwarden.find.analysis.model import Verdict
from memwarden.find.analysis.series import LifeSignals
from memwarden.find.analysis.trend import Z_OVERALL, Trend, TrendRule, assess_trend
from memwarden.find.analysis.units import format_bytes, format_count, format_signed_bytes

__all__ = ["bytes_from_rss", "rss_grows", "rss_only", "rss_support", "window_slopes"]


def window_slopes(trend: Trend, per_request: str) -> str:
    return ", ".join(format_count(s) for s in trend.window_slopes) + per_request


def rss_support(rss: Trend | None) -> str:
    if rss is None or rss.fit is None:
        return "no RSS in the lines"
    text = f"RSS {format_signed_bytes(rss.slope)}/request"
    if rss.state == "growing":
        return text + " (grows in every window)"
    return text


def rss_only(signals: LifeSignals, rss: Trend | None, config: AnalysisConfig,
             blocks_flat: bool) -> tuple[Verdict, str] | None:
    """A leak seen in RSS alone, or None when RSS does not show one."""
    if signals.rss is None:
        return None
    strict = assess_trend(signals.rss.xs, signals.rss.ys,
                          TrendRule(config.rss_only_bytes_per_request,
                                    config.rss_only_min_growth_bytes, config.windows))
    if strict.state != "growing":
        return None
    where = ("while allocated blocks stay flat: memory outside the Python allocator "
             "(C extensions, native buffers)" if blocks_flat else "(no block counts in the lines)")
    return "leak", (f"RSS grows {format_signed_bytes(strict.slope)}/request in every window, "
                    f"{format_bytes(strict.growth)} in all, {where}")


def rss_grows(rss: Trend | None) -> bool:
    return rss is not None and rss.state == "growing"


def bytes_from_rss(rss: Trend | None) -> str:
    """What RSS says the growth costs."""
    if rss is None or rss.fit is None:
        return "no RSS in the lines to size it"
    if rss.fit.z >= Z_OVERALL and rss.slope > 0:
        text = f"about {format_bytes(rss.slope)}/request by RSS"
        return text + (" (RSS grows in every window)" if rss.state == "growing" else "")
    return f"RSS does not show it yet ({format_signed_bytes(rss.slope)}/request)"
