"""The soak's quick mode (bench/soak.py) runs and passes: 200 chat sockets on
one worker of the shipped application, with messages, heartbeats and an
employee's dashboard stream, checked for lost or duplicated messages, errors
and presence flaps. (It starts its own Redis and server and uses its own
database; the figures themselves are not checked, and memory is judged only
in longer runs.)"""

import re
import subprocess
import sys

import pytest

from harness.servers import ROOT

FIGURES = ("connect", "server CPU", "redis", "heartbeats", "messages", "latency", "check", "presence", "memory")


@pytest.mark.timeout(150)
def test_soak_quick_passes():
    run = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-3000:]
    for figure in FIGURES:
        assert re.search(rf"^{figure}: ", run.stdout, re.MULTILINE), f"no {figure!r} line:\n{run.stdout}"
    assert re.search(r"^check: 0 lost, 0 duplicated, 0 unconfirmed of [1-9]", run.stdout, re.MULTILINE), run.stdout
    assert run.stdout.rstrip().endswith("PASS"), run.stdout
