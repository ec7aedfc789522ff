"""Axes: round ticks, one unit per axis, whole steps for counts."""

from __future__ import annotations

import math

from memwarden.find.report.scale import SMALLEST_STEP, axis_for, byte_unit, nice_step

MIB = 1024 * 1024


def _texts(values: list[float], kind: str = "count", **kwargs: object) -> list[str]:
    axis = axis_for(values, kind, "t", **kwargs)  # type: ignore[arg-type]
    return [tick.text for tick in axis.ticks]


def test_nice_steps_are_one_two_two_and_a_half_or_five() -> None:
    assert nice_step(600, 5) == 100
    assert nice_step(12_500, 5) == 2500
    assert nice_step(0.3, 5) == 0.05
    assert nice_step(0, 5) == 1.0


def test_byte_axis_uses_one_binary_unit_for_every_tick() -> None:
    axis = axis_for([80 * MIB, 86 * MIB], "bytes", "RSS")
    assert [t.text for t in axis.ticks] == ["78 MiB", "80 MiB", "82 MiB", "84 MiB", "86 MiB",
                                            "88 MiB"]
    assert axis.lo <= 80 * MIB and axis.hi >= 86 * MIB
    assert _texts([-4096, 16_900], "bytes") == ["-5 KiB", "0 KiB", "5 KiB", "10 KiB", "15 KiB",
                                                "20 KiB"]
    assert byte_unit(1023) == ("B", 1.0)
    assert byte_unit(3 * 1024**3)[0] == "GiB"


def test_count_axes_use_k_and_m_suffixes_only_for_large_values() -> None:
    assert _texts([0, 11_162]) == ["0", "2.5k", "5k", "7.5k", "10k", "12.5k"]
    assert _texts([2e6, 2.3e6]) == ["1.9M", "2M", "2.1M", "2.2M", "2.3M", "2.4M"]
    assert _texts([0, 1400]) == ["0", "500", "1,000", "1,500"]


def test_small_counts_never_get_fractional_ticks() -> None:
    assert _texts([3, 5]) == ["2", "3", "4", "5", "6"]
    assert _texts([0, 2.5]) == ["0", "1", "2", "3"]


def test_flat_series_sit_mid_axis_and_zero_stays_on_the_floor() -> None:
    axis = axis_for([3, 3], "count", "threads")
    assert axis.lo < 3 < axis.hi
    axis = axis_for([0, 0], "count", "children")
    assert axis.lo == 0 and axis.hi >= 1


def test_min_span_widens_noise_around_its_middle() -> None:
    axis = axis_for([-60, 80], "count", "blocks", include_zero=True, min_span=1000)
    assert axis.hi - axis.lo >= 1000
    assert axis.lo < -60 and axis.hi > 80
    axis = axis_for([10, 20], "count", "blocks", include_zero=True, min_span=1000)
    assert axis.lo == 0 and axis.hi >= 1000


def test_request_axis_spans_exactly_the_requests() -> None:
    axis = axis_for([1, 600], "request", "request", target_ticks=10)
    assert (axis.lo, axis.hi) == (1, 600)
    assert [t.text for t in axis.ticks] == ["100", "200", "300", "400", "500", "600"]
    assert _texts([1, 3000], "request") == ["500", "1,000", "1,500", "2,000", "2,500", "3,000"]


def test_axis_fraction_maps_the_domain_to_zero_one() -> None:
    axis = axis_for([0, 100], "count", "t")
    assert axis.fraction(axis.lo) == 0 and axis.fraction(axis.hi) == 1


def test_any_finite_values_get_a_finite_axis() -> None:
    """Subnormal spans and spans beyond the largest float still give ticks and places."""
    cases = ([0.0, 5e-324], [5e-324], [-5e-324, 5e-324], [-1.7976931348623157e308,
                                                          1.7976931348623157e308],
             [1e308, 1.5e308], [0.0, 2.0**62])
    for values in cases:
        for kind in ("bytes", "count", "request"):
            axis = axis_for(values, kind, "t")  # type: ignore[arg-type]
            assert math.isfinite(axis.lo) and math.isfinite(axis.hi) and axis.lo < axis.hi
            assert 1 <= len(axis.ticks) <= 12
            low, high = axis.fraction(min(values)), axis.fraction(max(values))
            # Inside the plot, in order; a value beyond 1e300 lies just off it.
            bound = 0.0 if max(map(abs, values)) <= 1e300 else 1.0
            assert -bound <= low <= high <= 1.0 + bound


def test_nice_step_of_an_underflowing_span_is_the_smallest_step() -> None:
    assert nice_step(5e-324, 5) == SMALLEST_STEP
    assert nice_step(1e-295, 5) == 2e-296
