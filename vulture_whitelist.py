"""Names vulture reports as unused that are used, by name or by contract.

Checked with: .venv/bin/vulture src/memwarden vulture_whitelist.py
Never imported or run: vulture reads the names below as uses.
"""
# ruff: noqa

# pytest finds hooks and fixtures by name (memwarden.pytest_plugin, entry point pytest11).
no_leaks  # the fixture
pytest_configure
pytest_collection_modifyitems
pytest_runtest_protocol
nextitem  # a hook argument pytest passes by name
pytest_runtest_makereport
pytest_terminal_summary

# gunicorn calls its hooks by name with these arguments (memwarden.gunicorn_conf, hold/hooks.py).
new_value  # nworkers_changed(server, new_value, old_value)
resp  # post_request(worker, req, environ, resp)
_.unraisablehook  # sys.unraisablehook, set, read by the interpreter
signum  # a signal handler's (signum, frame)

# __aexit__(exc_type, exc, tb): the context manager protocol.
tb

# Public data: fields of snapshots callers read (PoolStats, SmapsRollup) and the
# New Relic attribute names a deployment allows.
creating
create_failures
close_failures
health_failures
swap_bytes
ALL_ATTRIBUTES

# The exporters' sink methods: memwarden.export.sinks calls them by name for each event.
record_recycle
record_would_recycle
record_shed
record_would_shed
record_pool_refusal
record_would_pool_refusal
record_oom_kill
