"""The benchmark's quick mode runs, prints every row and leaves its results
(results.json and table.md) in artifacts/bench, so the
instrument never rots. (It starts its own Redis and servers and uses its own
database; the figures themselves are not checked here.)"""

import json
import re
import subprocess
import sys
import time

import pytest

from .servers import ROOT

OUT = ROOT / "artifacts" / "bench"


@pytest.mark.timeout(180)
def test_bench_quick_prints_all_seven_rows_and_writes_its_results():
    started = time.time()
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
    missing = re.findall(r"^\| \d\. [^|]+ \| n/a \|.*$", run.stdout, re.MULTILINE)
    assert not missing, f"rows without a figure for P: {missing}"
    printed = re.findall(r"^\| \d\. .*$", run.stdout, re.MULTILINE)

    for name in ("results.json", "table.md"):
        assert (OUT / name).stat().st_mtime >= started, f"{name} was not written by this run"

    results = json.loads((OUT / "results.json").read_text())
    assert (results["status"], results["mode"], results["repetitions"]) == ("ok", "quick", 1)
    machine = results["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["ram_gib"] > 0 and machine["kernel"]
    assert machine["python"] and machine["redis_server"] and machine["postgresql"]
    for package in ("Django", "channels", "daphne", "redis"):
        assert machine["versions"][package], package
    assert [r["line"] for r in results["rows"]] == printed
    assert all(r["figures"]["P"] is not None for r in results["rows"])

    table = (OUT / "table.md").read_text().splitlines()
    assert table[0].startswith("Machine: ") and machine["cpu"] in table[0] and "quick run" in table[0]
    assert table[2:4] == ["| row | P | B | U | unit | P/B | P/U | better |", "|---|---|---|---|---|---|---|---|"]
    assert table[4:] == printed
