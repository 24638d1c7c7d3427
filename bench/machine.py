"""The machine under the bench: which CPU each side runs on, the open-file
limit, and what a process uses (CPU time, resident memory, TCP
connections), read from /proc."""

import os
import resource
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
# The servers on one core and the load generator on the other, so that
# neither's CPU time is taken by the other.
SERVER_CPU, LOADGEN_CPU = 0, 1


def cpu_seconds(pid):
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def processes_cpu_seconds(name):
    """User + system CPU time used so far by every process called `name`
    (the PostgreSQL server's processes: its backends come and go)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == name:
                total += cpu_seconds(int(entry.name))
        except OSError:  # gone meanwhile
            continue
    return total


def cpu_busy_seconds(cpu):
    """Seconds CPU `cpu` has been busy (not idle or waiting for I/O), from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            ticks = [int(v) for v in line.split()[1:]]
            return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK
    return 0.0


def listen_overflows():
    """Connection attempts the kernel has dropped so far because a listen
    queue was full (TcpExt ListenOverflows, /proc/net/netstat; every listener
    on the machine, a client counted again for each retry that fails): each
    such client tries again only after a second or more."""
    lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines() if line.startswith("TcpExt:")]
    return int(dict(zip(lines[0], lines[1], strict=True))["ListenOverflows"])


def pinned(cpu):
    """A function that gives the calling process as many open files as it
    may have and pins it to `cpu` (on a machine with more than one): a
    server's preexec_fn, or called by the load generator on itself."""

    def pin():
        raise_file_limit()
        if hasattr(os, "sched_setaffinity") and os.cpu_count() > 1:
            os.sched_setaffinity(0, {cpu})

    return pin


def raise_file_limit(wanted=65536):
    """As many open files as the hard limit allows (up to `wanted`)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kb(pid):
    """A process's resident memory (VmRSS), in KB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tcp_to(port, pid=None, state="01"):
    """TCP connections (IPv4/6) to 127.0.0.1:`port` in `state` (01
    established, 06 time-wait), of process `pid` only when given."""
    inodes = None
    if pid is not None:
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            to_port = int(fields[2].rsplit(":", 1)[1], 16) == port and fields[3] == state
            if to_port and (inodes is None or fields[9] in inodes):
                count += 1
    return count
