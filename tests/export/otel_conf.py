"""gunicorn config for the OTLP tests: memwarden's, plus a census gauge in bytes
(its key ends in ``_bytes``), registered in the master and so in every worker."""

from memwarden import census
from memwarden.gunicorn_conf import *  # noqa: F403
from memwarden.gunicorn_conf import logconfig_dict, memwarden_settings  # noqa: F401

census.gauge("cache_bytes", lambda: 4096)
