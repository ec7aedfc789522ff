"""``memwarden check``: before a deploy, what memwarden will do under this
environment and gunicorn config, and whether a warning makes it ineffective.

The config is read as gunicorn reads it (``gunicorn.config.Config``: the
config's names, then ``GUNICORN_CMD_ARGS``, then the options given here), so
the workers, worker class, ``max_requests`` and hooks are the ones gunicorn
would use. The app is never imported: only its module's source is read.

Exit codes: 0, protection works (warnings may remain); 1, a warning makes a
protection ineffective (the line says which); 2, a usage error, a config or
setting that cannot be read, or one gunicorn would refuse to start with.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import sys
from types import ModuleType
from typing import Any, TextIO

from memwarden.check import GunicornView, Summary, read_cgroup, summarize
from memwarden.check_app import asyncio_use
from memwarden.export import MissingExtraError
from memwarden.settings import Settings, SettingsError

__all__ = ["DEFAULT_CONFIG", "CheckError", "add_check_arguments", "run_check_command"]

DEFAULT_CONFIG = "python:memwarden.gunicorn_conf"
GUNICORN_DEFAULT = "gunicorn.conf.py"
EXIT_ERROR = 2


class CheckError(Exception):
    """Something that stops the check: one line on stderr, exit code 2."""


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``memwarden check``."""
    parser.add_argument("app", nargs="?", default=None, metavar="APP",
                        help="the app as given to gunicorn (module:attr); its module's source "
                             "is read, not imported, to tell whether it uses asyncio")
    parser.add_argument("-c", "--config", default=None, metavar="CONFIG",
                        help="the gunicorn config: python:MODULE or a file path (default: "
                             f"the -c of GUNICORN_CMD_ARGS, else ./{GUNICORN_DEFAULT} if there "
                             f"is one, as gunicorn does, else {DEFAULT_CONFIG})")
    parser.add_argument("-w", "--workers", type=int, default=None, metavar="N",
                        help="worker count, as gunicorn's -w (default: the config's)")
    parser.add_argument("-k", "--worker-class", default=None, metavar="CLASS",
                        help="worker class, as gunicorn's -k (default: the config's)")
    parser.add_argument("--max-requests", type=int, default=None, metavar="N",
                        help="gunicorn's --max-requests (default: the config's)")
    parser.add_argument("--json", action="store_true",
                        help="print the summary as one JSON object instead of lines")


def _settings() -> Settings:
    """The settings gunicorn will use: memwarden's config reads them when first imported,
    so after the config (which may set MEMWARDEN_* variables before it imports it)."""
    from memwarden import gunicorn_conf

    return gunicorn_conf.memwarden_settings


def _load_module(location: str) -> ModuleType:
    if location.startswith("python:"):
        return importlib.import_module(location[len("python:"):])
    filename = location.removeprefix("file:")
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"{filename!r} does not exist")
    spec = importlib.util.spec_from_file_location("__config__", filename)
    if spec is None or spec.loader is None:
        raise ImportError(f"{filename!r} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules["__config__"] = module  # as gunicorn does: the config may import itself
    spec.loader.exec_module(module)
    return module


def _gunicorn_config(args: argparse.Namespace) -> tuple[Any, str, str | None]:
    """gunicorn's Config with the config file, GUNICORN_CMD_ARGS and our options applied."""
    try:
        # By name: gunicorn is not a dependency of memwarden (and has no type stubs).
        config_class: Any = importlib.import_module("gunicorn.config").Config
    except ImportError:
        raise CheckError("gunicorn is not installed here; memwarden check reads the config "
                         "as gunicorn does (pip install gunicorn)") from None
    cfg = config_class()
    try:
        env_args = cfg.parser().parse_args(cfg.get_cmd_args_from_env())
    except SystemExit:
        raise CheckError("GUNICORN_CMD_ARGS cannot be parsed by gunicorn") from None
    # gunicorn's own default first: ./gunicorn.conf.py when there is one.
    default = GUNICORN_DEFAULT if os.path.isfile(GUNICORN_DEFAULT) else DEFAULT_CONFIG
    location = args.config or env_args.config or default
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # gunicorn imports from its working directory
    try:
        # A config that prints must not spoil --json on stdout. Loading memwarden's
        # config here reads and checks the settings, as gunicorn will.
        with contextlib.redirect_stdout(sys.stderr):
            names = vars(_load_module(location))
            importlib.import_module("memwarden.gunicorn_conf")
    except (SettingsError, MissingExtraError) as exc:
        raise CheckError(f"{exc}; gunicorn would not start with this config") from None
    except (Exception, SystemExit) as exc:
        raise CheckError(f"cannot read the gunicorn config {location}: "
                         f"{type(exc).__name__}: {exc}".splitlines()[0][:500]) from None
    given = [(k, v) for k, v in names.items() if k in cfg.settings]
    given += [(k, v) for k, v in vars(env_args).items() if v is not None and k != "args"]
    given += [(k, v) for k, v in (("workers", args.workers), ("worker_class", args.worker_class),
                                  ("max_requests", args.max_requests)) if v is not None]
    for key, value in given:
        try:
            cfg.set(key.lower(), value)
        except Exception as exc:
            raise CheckError(f"the gunicorn config {location}: invalid value for {key}: "
                             f"{exc}".splitlines()[0][:500]) from None
    app = args.app or (env_args.args[0] if env_args.args else None) or cfg.wsgi_app
    return cfg, location, app


def build_summary(args: argparse.Namespace) -> Summary:
    """The summary for these arguments and this process's environment."""
    cfg, config, app = _gunicorn_config(args)
    settings = _settings()
    from memwarden.hook_calls import LOST
    from memwarden.hook_check import memwarden_hooks

    view = GunicornView(workers=int(cfg.workers), worker_class=str(cfg.worker_class_str),
                        max_requests=int(cfg.max_requests),
                        max_requests_jitter=int(cfg.max_requests_jitter),
                        hooks={name: getattr(cfg, name, None) for name in LOST}, app=app)
    chdir = str(getattr(cfg, "chdir", "") or os.getcwd())
    pythonpath = [p for p in str(getattr(cfg, "pythonpath", "") or "").split(",") if p]
    return summarize(settings, os.environ, read_cgroup(settings), view, memwarden_hooks(),
                     config,
                     asyncio_use(view.worker_class, app, [chdir, *pythonpath]))


def run_check_command(args: argparse.Namespace, stdout: TextIO | None = None,
                      stderr: TextIO | None = None) -> int:
    """``memwarden check``: 0, 1 (protection ineffective) or 2 (cannot check)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        summary = build_summary(args)
    except CheckError as exc:
        print(f"memwarden check: {exc}", file=err)
        return EXIT_ERROR
    except Exception as exc:  # a defect of its own: one line, no traceback
        print(f"memwarden check: internal error: {type(exc).__name__}: {exc}"
              .splitlines()[0][:500], file=err)
        return EXIT_ERROR
    if args.json:
        out.write(json.dumps(summary.to_json(), indent=2) + "\n")
    else:
        out.write("\n".join(summary.lines()) + "\n")
    return summary.exit_code
