"""Settings: every MEMWARDEN_* variable parses, bad values are named, the doc lists all."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memwarden import settings as settings_module
from memwarden.settings import (
    SETTINGS,
    Settings,
    SettingsError,
    settings_doc,
    unknown_variables,
    warn_unknown_variables,
)
from memwarden.sizes import Size

# One good value per setting and what it becomes. A new setting without a row here
# fails test_every_setting_has_a_parse_example.
GOOD: dict[str, list[tuple[str, Any]]] = {
    "census_every": [("1", 1), ("250", 250), (" 7 ", 7)],
    "census_seconds": [("0", 0.0), ("2.5", 2.5), ("30", 30.0)],
    "blocks_budget_us": [("0", 0.0), ("20", 20.0), ("7.5", 7.5)],
    "blocks_every": [("1", 1), ("8", 8), (" 16 ", 16)],
    "census_descendants": [("0", False), ("yes", True), (" Off ", False)],
    "gc_types": [("0", 0), ("20", 20)],
    "loop_tracking": [("1", True), ("TRUE", True), ("no", False), ("", False)],
    "log_level": [("debug", "DEBUG"), (" Warning ", "WARNING"), ("CRITICAL", "CRITICAL")],
    "health_paths": [("/hz", ("/hz",)), (" /a , /b ,, ", ("/a", "/b")), ("", ())],
    "access_log": [("on", True), ("false", False)],
    "proc_root": [("/host/proc", "/host/proc")],
    "sys_root": [("/host/sys", "/host/sys")],
    "wrap_app": [("0", False), ("1", True)],
    "prometheus": [("1", True), ("off", False)],
    "prometheus_dir": [("", ""), ("/tmp/prom", "/tmp/prom")],
    "prometheus_path": [("", ""), (" /m ", "/m"), ("/metrics", "/metrics")],
    "prometheus_port": [("0", 0), ("65535", 65535), ("9100", 9100)],
    "prometheus_host": [("0.0.0.0", "0.0.0.0")],
    "otel": [("yes", True), ("0", False)],
    "newrelic": [("auto", "auto"), (" Auto ", "auto"), ("1", "on"), ("off", "off")],
    "census_collect": [("1", True), ("0", False)],
    "protect": [("off", "off"), ("Dry-Run", "dry-run"), ("on", "on")],
    "recycle": [("on", "on"), ("DRY_RUN", "dry-run"), ("off", "off")],
    "soft_limit": [("80%", Size(fraction=0.8)), ("off", None),
                   ("512MiB", Size(bytes=512 * 2**20))],
    "idle_limit": [("60%", Size(fraction=0.6)), ("1GB", Size(bytes=10**9))],
    "idle_seconds": [("0.5", 0.5), ("5", 5.0)],
    "hard_limit": [("off", None), ("2GiB", Size(bytes=2 * 2**30))],
    "grace_seconds": [("auto", None), ("", None), ("2.5", 2.5)],
    "max_requests": [("0", 0), ("1000", 1000)],
    "max_requests_jitter": [("0", 0), ("50", 50)],
    "footprint": [("RSS", "rss"), ("pss", "pss")],
    "footprint_descendants": [("0", False), ("1", True)],
    "footprint_every": [("1", 1), ("10", 10)],
    "footprint_seconds": [("0", 0.0), ("5", 5.0)],
    "max_concurrent_recycles": [("0", 0), ("2", 2)],
    "orphans": [("dry-run", "dry-run"), ("on", "on")],
    "orphan_grace_seconds": [("0", 0.0), ("2", 2.0)],
    "shed": [("off", "off"), ("on", "on")],
    "shed_high": [("90%", Size(fraction=0.9)), ("1GiB", Size(bytes=2**30))],
    "shed_low": [("off", None), ("800MiB", Size(bytes=800 * 2**20))],
    "shed_cgroup_high": [("0.9", 0.9), ("95%", 0.95)],
    "shed_cgroup_low": [("off", None), ("85%", 0.85)],
    "shed_retry_after": [("1", 1), ("30", 30)],
    "pool_limits": [("dry-run", "dry-run"), (" OFF ", "off"), ("on", "on")],
}

BAD: dict[str, list[str]] = {
    "census_every": ["0", "-3", "ten", "1.5", ""],
    "census_seconds": ["-0.1", "nan", "soon", "", "inf", "1e999"],
    "blocks_budget_us": ["-1", "nan", "fast", "Infinity"],
    "blocks_every": ["0", "-2", "often", "2.5", ""],
    "census_descendants": ["maybe", "2"],
    "gc_types": ["-1", "many"],
    "loop_tracking": ["enabled"],
    "log_level": ["verbose", "10", ""],
    "access_log": ["y"],
    "wrap_app": ["nope"],
    "prometheus": ["sure"],
    "prometheus_path": ["metrics", "/m?x=1", "/a b"],
    "prometheus_port": ["-1", "65536", "http"],
    "otel": ["2"],
    "newrelic": ["maybe", "2"],
    "census_collect": ["sometimes"],
    "protect": ["observe", "1", ""],
    "recycle": ["maybe"],
    "soft_limit": ["512M", "120%", "lots", "9" * 400],
    "idle_seconds": ["0", "-1", "inf", "NaN"],
    "grace_seconds": ["-1", "soon", "inf", "nan", " +Infinity ", "1e400"],
    "footprint": ["uss"],
    "max_concurrent_recycles": ["-1"],
    "orphans": ["yes"],
    "orphan_grace_seconds": ["inf", "-inf"],
    "footprint_seconds": ["inf"],
    "shed_high": ["1g"],
    "shed_cgroup_high": ["2", "150%"],
    "shed_retry_after": ["0"],
    "pool_limits": ["unbounded", "1"],
}


def env_name(name: str) -> str:
    return "MEMWARDEN_" + name.upper()


def test_every_setting_has_a_parse_example() -> None:
    assert set(GOOD) == {s.name for s in SETTINGS}


@pytest.mark.parametrize(("name", "raw", "expected"),
                         [(n, raw, exp) for n, rows in GOOD.items() for raw, exp in rows])
def test_each_variable_parses_into_its_field(name: str, raw: str, expected: Any) -> None:
    settings = Settings.from_env({env_name(name): raw})
    assert getattr(settings, name) == expected
    assert type(getattr(settings, name)) is type(expected)


@pytest.mark.parametrize(("name", "raw"), [(n, raw) for n, rows in BAD.items() for raw in rows])
def test_a_bad_value_raises_settings_error_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({env_name(name): raw})
    message = str(info.value)
    assert message.startswith(f"{env_name(name)}={raw!r}: ")
    assert len(message) > len(f"{env_name(name)}={raw!r}: ")  # and says why
    assert isinstance(info.value, ValueError)


def test_all_variables_at_once_are_read_together() -> None:
    env = {env_name(n): rows[-1][0] for n, rows in GOOD.items()}
    settings = Settings.from_env(env)
    for name, rows in GOOD.items():
        assert getattr(settings, name) == rows[-1][1]


def test_no_variables_give_the_defaults_which_match_the_table() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    for setting in SETTINGS:
        assert getattr(settings, setting.name) == setting.parse(setting.default)


def test_other_environment_variables_are_ignored() -> None:
    assert Settings.from_env({"PATH": "/bin", "CENSUS_EVERY": "0"}) == Settings()


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMWARDEN_CENSUS_EVERY", "3")
    monkeypatch.setenv("MEMWARDEN_LOG_LEVEL", "error")
    settings = Settings.from_env()
    assert (settings.census_every, settings.log_level) == (3, "ERROR")
    monkeypatch.setenv("MEMWARDEN_GC_TYPES", "x")
    with pytest.raises(SettingsError, match="MEMWARDEN_GC_TYPES"):
        Settings.from_env()


def test_overrides_win_over_the_environment() -> None:
    settings = Settings.from_env({"MEMWARDEN_CENSUS_EVERY": "3"}, census_every=9)
    assert settings.census_every == 9


def test_settings_are_immutable() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.census_every = 5  # type: ignore[misc]


def test_settings_doc_lists_every_variable_with_its_default_and_meaning() -> None:
    doc = settings_doc()
    lines = doc.splitlines()
    assert lines[0] == "| variable | default | meaning |"
    assert len(lines) == 2 + len(SETTINGS)
    for setting, line in zip(SETTINGS, lines[2:], strict=True):
        assert line == f"| `{setting.env}` | `{setting.default}` | {setting.doc} |"
        assert setting.env == env_name(setting.name)
        assert setting.doc.strip()
        assert "|" not in setting.doc  # would break the table


# Every setting parsed as a float, and the least value it takes.
FLOAT_MINIMUMS = {"census_seconds": 0.0, "blocks_budget_us": 0.0, "idle_seconds": 0.1,
                  "grace_seconds": 0.0, "footprint_seconds": 0.0, "orphan_grace_seconds": 0.0}
NUMBER_TEXT = st.one_of(
    st.floats().map(repr),  # nan, inf, -inf, subnormals, -0.0
    st.integers(min_value=-(10**6), max_value=10**6).map(str),
    st.sampled_from(["Infinity", "-Infinity", "+inf", " NaN ", "1e999", "-1e999", "1e-400",
                     "0.1", "0.09999999999999999", "1_000"]),
)


def test_float_settings_are_the_listed_ones() -> None:
    floats = {s.name for s in SETTINGS if isinstance(Settings().__getattribute__(s.name), float)
              or s.name == "grace_seconds"}
    assert floats == set(FLOAT_MINIMUMS)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(FLOAT_MINIMUMS)), text=NUMBER_TEXT)
def test_float_settings_take_exactly_the_finite_values_at_or_above_their_minimum(
        name: str, text: str) -> None:
    value = float(text)
    env = {env_name(name): text}
    if math.isfinite(value) and value >= FLOAT_MINIMUMS[name]:
        assert getattr(Settings.from_env(env), name) == value
    else:
        with pytest.raises(SettingsError, match=f"^{env_name(name)}="):
            Settings.from_env(env)


def test_unknown_variables_are_named_with_the_closest_setting() -> None:
    env = {"MEMWARDEN_SOFT_LIMT": "1GiB", "MEMWARDEN_CENSUS_EVERY": "3", "PATH": "/bin",
           "MEMWARDEN_XYZZY": "1", "memwarden_grace_seconds": "2", "MEMWARDENS": "x"}
    assert unknown_variables(env) == [("MEMWARDEN_SOFT_LIMT", "MEMWARDEN_SOFT_LIMIT"),
                                      ("MEMWARDEN_XYZZY", None),
                                      ("memwarden_grace_seconds", "MEMWARDEN_GRACE_SECONDS")]
    assert unknown_variables({env_name(s.name): s.default for s in SETTINGS}) == []


def test_unknown_variables_are_logged_once_per_process(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(settings_module, "_warned", False)
    monkeypatch.setenv("MEMWARDEN_IDLE_SECOND", "9")
    monkeypatch.setenv("MEMWARDEN_NOPE_NOPE_NOPE", "1")
    with caplog.at_level(logging.WARNING, logger="memwarden.settings"):
        Settings.from_env()
        Settings.from_env()
        warn_unknown_variables()
        Settings.from_env({"MEMWARDEN_OTHER": "1"})  # a given mapping is never the process's
    assert [r.getMessage() for r in caplog.records] == [
        "memwarden ignores MEMWARDEN_IDLE_SECOND (did you mean MEMWARDEN_IDLE_SECONDS?), "
        "MEMWARDEN_NOPE_NOPE_NOPE: not a memwarden setting"]
