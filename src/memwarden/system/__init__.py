"""The only code that reads /proc and cgroup files, and the process-identity
checks that signalling relies on. Imports nothing else of memwarden, so every
other part can rely on it without cycles. ``proc_root`` and ``sys_root`` are
injectable so tests point them at fixture trees."""
