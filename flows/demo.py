"""``make demo``: the whole thing once, through a real local Prefect server.

Start the server (127.0.0.1, the project's PREFECT_HOME, analytics off), create the work pool,
register the deployments, start a worker, run ``prefect deployment run
'curate-alpaca/curate-alpaca' --watch``, show the funnel artifact the run published and where
the run directory and its card are, then stop every service it started (on failure and
Ctrl-C too).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from flows.serve import ROOT, _prefect, services

ARTIFACT = "curate-alpaca-funnel"


def free_port(preferred: int = 4200) -> int:
    """``preferred`` when nothing listens there, else any free port."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", preferred)) != 0:
            return preferred
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def latest_markdown(env: dict[str, str], key: str) -> str | None:
    """The markdown of the newest artifact with this key, read from the server."""
    code = (
        "import json, sys\n"
        "from prefect.client.orchestration import get_client\n"
        "with get_client(sync_client=True) as client:\n"
        "    found = client.read_artifacts(limit=50)\n"
        f"found = [a for a in found if a.key == {key!r}]\n"
        "found.sort(key=lambda a: a.created)\n"
        "print(json.dumps(found[-1].data if found else None))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else None


def latest_flow_run(env: dict[str, str], deployment: str) -> str | None:
    """The id of the newest flow run of ``deployment`` (``flow/deployment``), read from the server."""
    code = (
        "from prefect.client.orchestration import get_client\n"
        "with get_client(sync_client=True) as client:\n"
        f"    d = client.read_deployment_by_name({deployment!r})\n"
        "    runs = client.read_flow_runs(limit=50)\n"
        "runs = sorted((r for r in runs if r.deployment_id == d.id), key=lambda r: r.created)\n"
        "print(runs[-1].id if runs else '')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    return lines[-1] if done.returncode == 0 and lines and lines[-1] else None


def demo(out: str = "runs/curate-alpaca", sources: str = '["alpaca"]', home: Path | None = None) -> int:
    """Run it all once; ``sources`` is the flow parameter as JSON. Returns an exit code."""
    import time

    started = time.monotonic()
    port = free_port()
    try:
        with services(port, home) as running:
            print("\n$ prefect deployment run 'curate-alpaca/curate-alpaca' --watch", flush=True)
            run = subprocess.run(
                [
                    *_prefect("deployment", "run", "curate-alpaca/curate-alpaca"),
                    "--param",
                    f"sources={sources}",
                    "--param",
                    f"out={out}",
                    "--watch",
                ],
                env=running.env,
                cwd=ROOT,
            )
            if run.returncode != 0:
                print(f"make demo: the flow run failed (exit {run.returncode}); see the log above", file=sys.stderr)
                return 1
            markdown = latest_markdown(running.env, ARTIFACT)
            print(f"\nartifact {ARTIFACT} (in the Prefect UI while the server runs):\n")
            print(markdown or "(could not read the artifact back from the server)")
            card = Path(out) / "README.md"
            print(f"run directory: {out}\ndataset card: {card} (figures in {Path(out) / 'figures'})")
            run_id = latest_flow_run(running.env, "curate-alpaca/curate-alpaca")
            if run_id:
                print(f"Prefect UI of the run (while the server runs): http://127.0.0.1:{port}/runs/flow-run/{run_id}")
            print(f"wall time: {time.monotonic() - started:.0f} s (install excluded)")
    except KeyboardInterrupt:
        print("make demo: interrupted; services stopped", file=sys.stderr)
        return 130
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(demo(*sys.argv[1:]))
