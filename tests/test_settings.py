"""Settings: every MEMWARDEN_* variable parses, bad values are named, the doc lists all."""

from __future__ import annotations

from typing import Any

import pytest

from memwarden.settings import SETTINGS, Settings, SettingsError, settings_doc
from memwarden.sizes import Size

# One good value per setting and what it becomes. A new setting without a row here
# fails test_every_setting_has_a_parse_example.
GOOD: dict[str, list[tuple[str, Any]]] = {
    "census_every": [("1", 1), ("250", 250), (" 7 ", 7)],
    "census_seconds": [("0", 0.0), ("2.5", 2.5), ("30", 30.0)],
    "blocks_budget_us": [("0", 0.0), ("20", 20.0), ("7.5", 7.5)],
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
    "census_seconds": ["-0.1", "nan", "soon", ""],
    "blocks_budget_us": ["-1", "nan", "fast"],
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
    "census_collect": ["sometimes"],
    "protect": ["observe", "1", ""],
    "recycle": ["maybe"],
    "soft_limit": ["512M", "120%", "lots"],
    "idle_seconds": ["0", "-1"],
    "grace_seconds": ["-1", "soon"],
    "footprint": ["uss"],
    "max_concurrent_recycles": ["-1"],
    "orphans": ["yes"],
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
