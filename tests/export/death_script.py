"""The deaths both exporters' series tests publish on the bus in a subprocess, as
hold and the watchdog do, and the count of each cause they must add up to."""

DEATHS_PUBLISHED = """
from memwarden import events
events.publish(events.OomKill(2))
events.publish(events.DeathInFlight("timeout", "/slow", "r1", 30.5))
events.publish(events.DeathInFlight("timeout", "/slow", "r2", 31.0))
events.publish(events.DeathInFlight("signal", "/chat", "r3", 0.2))
# An OOM kill in flight is the OomKill above, not a second death.
events.publish(events.DeathInFlight("oom_kill", "/chat", "r4", 1.0))
events.publish(events.DeathInFlight("unheard-of", "/chat", "r5", 1.0))
"""

# An unknown cause is not counted; an OOM kill is counted once, by its OomKill.
DEATHS_COUNTED = {"oom_kill": 2, "timeout": 2, "signal": 1}
