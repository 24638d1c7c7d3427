"""What a bench run leaves behind: every row's figures, the latency sweep
and the machine they were taken on as JSON (results.json), and the table it
prints as Markdown under a line naming the machine (table.md), ready for the
README."""

import importlib.metadata
import json
import math
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from harness.servers import ROOT

ARTIFACTS = ROOT / "artifacts" / "bench"
HEADER = "| row | P | B | U | unit | P/B | P/U | better |\n|---|---|---|---|---|---|---|---|"
# The packages the figures depend on, as installed (the servers run on the
# same interpreter as the bench).
PACKAGES = ("Django", "channels", "channels-redis", "daphne", "redis", "websockets", "psycopg", "aiohttp", "uvicorn")


def finite(value):
    """A figure for JSON: None where there is none (NaN)."""
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def cell(value, spec=".1f"):
    return "n/a" if finite(value) is None else format(value, spec)


class Report:
    """The rows and notes a run prints, kept for results.json and table.md."""

    def __init__(self):
        self.rows, self.notes = [], []
        self.started = datetime.now(UTC)
        self.machine = {}
        self.sweep = None
        self.plot = None  # its path, relative to the repository
        self.p_server = None  # the server P runs on (bench.run sets it: --p-server)
        self.p_commit = "durable"  # P's PostgreSQL commits (--p-commit)

    def row(self, label, figures, unit, better):
        """Print one table line, a figure per target and P's ratios to B and U."""
        p, b, u = (figures.get(k, float("nan")) for k in "PBU")
        ratios = {"P/B": p / b if b else float("nan"), "P/U": p / u if u else float("nan")}
        line = f"| {label} | {cell(p)} | {cell(b)} | {cell(u)} | {unit} | {cell(ratios['P/B'], '.2f')} "
        line += f"| {cell(ratios['P/U'], '.2f')} | {better} |"
        print(line, flush=True)
        self.rows.append(
            {
                "row": int(label.split(".", 1)[0]),
                "label": label,
                "figures": {k: finite(v) for k, v in zip("PBU", (p, b, u), strict=True)},
                "unit": unit,
                "ratios": {k: finite(v) for k, v in ratios.items()},
                "better": better,
                "line": line,
            }
        )

    def note(self, text):
        print(f"# {text}", flush=True)
        self.notes.append(text)

    def machine_line(self, mode, reps):
        m, v = self.machine, self.machine.get("versions", {})
        return (
            f"{m.get('cpu')}, {m.get('cores')} cores, {m.get('ram_gib')} GiB RAM, {m.get('kernel')}; "
            f"Python {m.get('python')}, Django {v.get('Django')}, Channels {v.get('channels')}, "
            f"channels-redis {v.get('channels-redis')}, daphne {v.get('daphne')}, Redis {m.get('redis_server')} "
            f"(redis-py {v.get('redis')}), PostgreSQL {m.get('postgresql')}; "
            f"{self.started:%Y-%m-%d %H:%M} UTC, {mode} run, P on {self.p_server} {v.get(self.p_server)}"
            f"{'' if self.p_commit == 'durable' else f' with {self.p_commit} commits (not shipped)'}, "
            f"{f'{reps} repetitions (medians)' if reps > 1 else '1 repetition'}, "
            f"commit {m.get('commit') or 'unknown'}{' (modified)' if m.get('modified') else ''}"
        )

    def write(self, directory, mode, reps, targets, status):
        """results.json and table.md in `directory`; answers their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        finished = datetime.now(UTC)
        results = {
            "status": status,
            "mode": mode,
            "repetitions": reps,
            "targets": targets,
            "p_server": self.p_server,
            "p_commit": self.p_commit,
            "started": self.started.isoformat(timespec="seconds"),
            "finished": finished.isoformat(timespec="seconds"),
            "elapsed_s": round((finished - self.started).total_seconds(), 1),
            "machine": self.machine,
            "machine_line": self.machine_line(mode, reps),
            "rows": self.rows,
            "notes": self.notes,
            "sweep": self.sweep,
            "plot": self.plot,
        }
        json_path, table_path = directory / "results.json", directory / "table.md"
        json_path.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
        lines = [f"Machine: {results['machine_line']}.", ""]
        if status != "ok":
            lines += ["**This run did not finish**: " + "; ".join(status.splitlines()), ""]
        lines += [HEADER] + [r["line"] for r in self.rows]
        table_path.write_text("\n".join(lines) + "\n")
        return json_path, table_path


def describe_machine(redis_server, postgresql):
    """CPU, cores, RAM, kernel, interpreter and package versions, the load
    when the run started and the commit measured."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        ram_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    except (OSError, StopIteration):
        ram_kb = 0
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(ram_kb / 2**20, 1),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
        "redis_server": redis_server,
        "postgresql": postgresql,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        **git_commit(),
    }


def git_commit():
    """The commit measured, and whether tracked files differ from it."""

    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "modified": None}
    if head.returncode != 0:
        return {"commit": None, "modified": None}
    return {"commit": head.stdout.strip(), "modified": bool(status.stdout.strip())}
