"""``curate run`` with no Prefect server configured: its own temporary server, started first, stopped at exit."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_run_without_a_server_starts_and_stops_its_own(tmp_path: Path, data_dir: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    default = yaml.safe_load((ROOT / "curate" / "recipes" / "curate-alpaca.yaml").read_text())
    recipe.write_text(yaml.safe_dump({"name": "filters-only", "filters": default["filters"]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect"), "DO_NOT_TRACK": "1"}
    command = [sys.executable, "-m", "curate.cli", "run", "curate-alpaca", "alpaca-seed-tasks"]
    done = subprocess.run(
        [*command, "--out", str(tmp_path / "run"), "--recipe", str(recipe)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    started = re.search(r"starting Prefect's temporary server on http://127\.0\.0\.1:(\d+)", done.stdout)
    assert started, done.stdout[-2000:]
    assert "Traceback" not in output and "database is locked" not in output
    assert "View at" not in output  # the temporary server serves no UI, so no link to one
    assert "Beginning flow run" in output and "175 records in" in done.stdout
    assert not _listening(int(started.group(1)))  # stopped when the command ended


def test_a_configured_server_is_used_as_it_is(tmp_path: Path) -> None:
    """With PREFECT_API_URL set, nothing is started and the setting is left alone."""
    script = (
        "from flows.temporary_server import temporary_server\n"
        "from prefect.settings import PREFECT_API_URL\n"
        "with temporary_server(()) as url:\n"
        "    print(url, PREFECT_API_URL.value())\n"
    )
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api", "PREFECT_HOME": str(tmp_path / "prefect")}
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["None", "http://127.0.0.1:9/api"]
    assert "temporary server" not in done.stdout
