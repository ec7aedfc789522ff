"""Hold: keep a worker's memory within its limit. The policy (pure functions
of a footprint and a limit), the worker side, the master side (the watchdog),
the slots that keep recycles rolling one at a time, shedding, the worker's
event loop, bounded pools, orphans and exit statuses. Knows nothing of the
exporters: what it does is published on :mod:`memwarden.events`."""
