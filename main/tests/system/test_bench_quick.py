"""The benchmark's and the soak's quick modes run and pass, so the
instruments never rot. The benchmark prints every row and leaves its results
(results.json, table.md and the latency plot) in artifacts/bench; the soak
holds 200 chat sockets on one worker of the shipped application, with
messages, heartbeats and an employee's dashboard stream, checked for lost or
duplicated messages, errors and presence flaps. (Each starts its own Redis
and servers and uses its own database; the figures themselves are not
checked, and the soak judges memory only in longer runs.)"""

import json
import re
import struct
import subprocess
import sys
import time

import pytest

from harness.servers import ROOT

OUT = ROOT / "artifacts" / "bench"
SOAK_FIGURES = ("connect", "server CPU", "redis", "heartbeats", "messages", "latency", "check", "presence", "memory")


def quick(module, *args, timeout=120):
    """`python -m <module> --quick <args>`, run to its end."""
    return subprocess.run(
        [sys.executable, "-m", module, "--quick", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.timeout(180)
def test_bench_quick_prints_all_ten_rows_and_writes_its_results():
    started = time.time()
    run = quick("bench.run", timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = set(re.findall(r"^\| (\d+)\. ", run.stdout, re.MULTILINE))
    assert rows == {str(n) for n in range(1, 11)}, run.stdout
    missing = re.findall(r"^\| \d+\. [^|]+ \| n/a \|.*$", run.stdout, re.MULTILINE)
    assert not missing, f"rows without a figure for P: {missing}"
    printed = re.findall(r"^\| \d+\. .*$", run.stdout, re.MULTILINE)

    for name in ("results.json", "table.md", "latency.png"):
        assert (OUT / name).stat().st_mtime >= started, f"{name} was not written by this run"
    plot_in_docs = ROOT / "docs" / "bench-latency.png"
    assert not plot_in_docs.exists() or plot_in_docs.stat().st_mtime < started, "a quick run wrote to docs/"

    results = json.loads((OUT / "results.json").read_text())
    assert (results["status"], results["mode"], results["repetitions"]) == ("ok", "quick", 1)
    assert (results["p_server"], results["p_commit"]) == ("uvicorn", "durable")
    assert results["plot"] == "artifacts/bench/latency.png"
    machine = results["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["ram_gib"] > 0 and machine["kernel"]
    assert machine["python"] and machine["redis_server"] and machine["postgresql"]
    for package in ("Django", "channels", "uvicorn", "redis"):
        assert machine["versions"][package], package
    assert [r["line"] for r in results["rows"]] == printed
    assert all(r["figures"]["P"] is not None for r in results["rows"])
    # Row 1: what a message costs the server (every target) and PostgreSQL (P); a quick run's are too short to read.
    costs = [r for r in results["rows"] if r["label"].startswith(("1. server CPU", "1. PostgreSQL CPU"))]
    measured = [[k for k, v in r["figures"].items() if v is not None] for r in costs]
    assert measured == [["P", "B", "U"], ["P"]], costs
    # Row 8: the dashboard stream, v2 (P) against the chapter's form on the same server (B).
    stream = [r for r in results["rows"] if r["row"] == 8]
    assert len(stream) == 4 and all(r["figures"]["B"] is not None for r in stream), stream

    sweep = results["sweep"]
    assert set(sweep["points"]) == {"P", "B", "U"}
    for name, points in sweep["points"].items():
        assert points and [p["rate"] for p in points] == sweep["rates"][: len(points)], (name, points)
        assert points[0]["valid"] and points[0]["p50_ms"] <= points[0]["p99_ms"], (name, points)
        assert len(points) == len(sweep["rates"]) or name in sweep["stopped"], (name, sweep)

    table = (OUT / "table.md").read_text().splitlines()
    assert table[0].startswith("Machine: ") and machine["cpu"] in table[0] and "quick run" in table[0]
    assert table[2:4] == ["| row | P | B | U | unit | P/B | P/U | better |", "|---|---|---|---|---|---|---|---|"]
    assert table[4:] == printed

    png = (OUT / "latency.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 800 and height >= 500 and len(png) > 20_000, (width, height, len(png))


@pytest.mark.timeout(120)
def test_bench_runs_our_application_on_daphne_for_comparison():
    run = quick("bench.run", "--p-server", "daphne", "--targets", "P", "--rows", "1,5", timeout=90)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((OUT / "results.json").read_text())
    assert (results["status"], results["p_server"], results["targets"]) == ("ok", "daphne", ["P"])
    assert "P on daphne" in results["machine_line"]
    assert {r["row"] for r in results["rows"]} == {1, 5}
    assert all(r["figures"]["P"] for r in results["rows"] if r["label"].startswith("1. latency"))
    assert results["plot"] is None  # no sweep, and never docs/ for another server


@pytest.mark.timeout(150)
def test_soak_quick_passes():
    run = quick("bench.soak")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-3000:]
    for figure in SOAK_FIGURES:
        assert re.search(rf"^{figure}: ", run.stdout, re.MULTILINE), f"no {figure!r} line:\n{run.stdout}"
    assert re.search(r"^check: 0 lost, 0 duplicated, 0 unconfirmed of [1-9]", run.stdout, re.MULTILINE), run.stdout
    assert run.stdout.rstrip().endswith("PASS"), run.stdout
