"""The benchmark's quick mode runs and prints every row, so the instrument
never rots. (It starts its own Redis and servers and uses its own database;
the figures themselves are not checked here.)"""

import re
import subprocess
import sys

import pytest

from .servers import ROOT


@pytest.mark.timeout(180)
def test_bench_quick_prints_all_seven_rows():
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = set(re.findall(r"^\| (\d)\. ", run.stdout, re.MULTILINE))
    assert rows == {str(n) for n in range(1, 8)}, run.stdout
    missing = re.findall(r"^\| \d\. [^|]+ \| nan \|.*$", run.stdout, re.MULTILINE)
    assert not missing, f"rows without a figure for P: {missing}"
