"""Prefect flows that wire curate's library stages into tasks.

Importing this package sets two Prefect defaults (before Prefect reads its settings) unless the
user set them: analytics off, and a longer start-up wait for the ephemeral API server, which
needs more than Prefect's 20 s on a busy 2-core machine with a fresh PREFECT_HOME.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
