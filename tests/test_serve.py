"""The curate-alpaca deployment on a real local Prefect server with a process worker."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from flows.serve import ROOT, environment


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_deployment_runs_on_a_local_server_and_serve_stops_everything(tmp_path: Path, data_dir: Path) -> None:
    port = free_port()
    home = tmp_path / "prefect-home"
    log = tmp_path / "serve.log"
    code = f"from pathlib import Path; from flows.serve import serve; serve({port}, Path({str(home)!r}))"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CURATE_DATA_DIR": str(data_dir)},
        )
    try:
        deadline = time.monotonic() + 240
        while "ready:" not in log.read_text() and time.monotonic() < deadline:
            assert server.poll() is None, log.read_text()[-3000:]
            time.sleep(1)
        assert "ready:" in log.read_text(), log.read_text()[-3000:]
        out_dir = tmp_path / "deployed"
        env = environment(port, home)
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "prefect"),
                "deployment",
                "run",
                "curate-alpaca/curate-alpaca",
                "--param",
                'sources=["alpaca-seed-tasks"]',
                "--param",
                f"out={out_dir}",
                "--watch",
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert "Completed" in done.stdout, done.stdout[-3000:] + log.read_text()[-3000:]
        manifest = json.loads((out_dir / "manifest.json").read_text())
        assert manifest["records"]["in"] == 175 and (out_dir / "README.md").exists()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the server is still listening after serve stopped"
