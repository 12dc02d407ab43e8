"""``make test``: every tier in two pytest sessions side by side, each on its own local stack.

Much of the integration tier is waiting (for a broker restart, a backoff, a sink that
is down, the hours-long file), so two independent sessions on separate stack instances
finish well before one would. Each lane writes its own log, printed whole when the lane
ends, and has its own temp and cache folders; the exit status is the worst lane's.

    python tests/run_lanes.py [pytest args...]    # the args go to both lanes
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INTEGRATION = "tests/integration"


@dataclass(frozen=True)
class Lane:
    """One pytest session: what it runs, and the stack instance its integration tests use."""

    name: str
    stack: str  # a name local-dev/stack.py gives fixed ports
    paths: tuple[str, ...]


# Balanced on measured durations (a cold `make test`: lane 1 ran 33 min, lane 2 19 min
# before the last four moved): the three-hour file, the Kafka door suites, the store and
# engine faults, the rebalance, the Knative delivery harness and the built image's modes
# (tests/image, about 2 minutes) in one lane; the fault suite and everything without a
# stack in the other.
SECOND = (
    "tests/image",
    f"{INTEGRATION}/test_hostile_inputs.py",
    f"{INTEGRATION}/test_kafka_worker.py",
    f"{INTEGRATION}/test_load.py",
    f"{INTEGRATION}/test_store_faults.py",
    f"{INTEGRATION}/test_rebalance.py",
    f"{INTEGRATION}/test_engine_broken.py",
    f"{INTEGRATION}/test_knative_delivery.py",
)
LANES = (
    Lane("lane-1", "test", ("tests", *(f"--ignore={path}" for path in SECOND))),
    Lane("lane-2", "test-2", SECOND),
)


def main(extra: list[str]) -> int:
    """Run every lane at once; print each lane's log as it ends; the worst exit status."""
    temp = Path(tempfile.gettempdir()) / "diarization-tests"
    temp.mkdir(exist_ok=True)
    started = time.monotonic()
    running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    for lane in LANES:
        log = temp / f"{lane.name}.log"
        command = [
            sys.executable,
            "-m",
            "pytest",
            *lane.paths,
            f"--basetemp={temp / lane.name}",
            "-o",
            f"cache_dir={REPO / '.pytest_cache' / lane.name}",
            *extra,
        ]
        print(f"{lane.name} (stack {lane.stack!r}): {' '.join(command[3:])}\n  log: {log}", flush=True)
        with log.open("wb") as out:
            env = {**os.environ, "TEST_STACK_NAME": lane.stack}
            running[lane.name] = (
                subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT),
                log,
            )
    try:
        return _wait(running, started)
    finally:
        for process, _ in running.values():  # interrupted: leave nothing running
            process.terminate()


def _wait(running: dict[str, tuple[subprocess.Popen[bytes], Path]], started: float) -> int:
    worst, summary = 0, []
    while running:
        for name, (process, log) in list(running.items()):
            if process.poll() is None:
                continue
            del running[name]
            minutes = (time.monotonic() - started) / 60
            summary.append(f"{name}: exit {process.returncode} after {minutes:.1f} min")
            print(f"\n===== {summary[-1]} =====", flush=True)
            sys.stdout.write(log.read_text(errors="replace"))
            sys.stdout.flush()
            # a lane killed by a signal has a negative status: still a failure
            worst = max(worst, process.returncode if process.returncode >= 0 else 128 - process.returncode)
        time.sleep(1)
    print("\n" + "\n".join(summary), flush=True)
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
