"""Real servers for end-to-end tests and the bench: processes on loopback
ports, started and stopped by the tests (and bench runs) that use them."""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process=None, timeout=20.0, own=False):
    """Until something listens on `port`; with `own`, until `process` itself
    does (with SO_REUSEPORT another process may be answering there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited early with code {process.returncode}")
        if own:
            if listens(process.pid, port):
                return
        else:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                pass
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def listens(pid, port):
    """Whether process `pid` itself holds a socket listening on TCP `port` (Linux's /proc)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as rows:
                next(rows)
                for row in rows:
                    fields = row.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                        inodes.add(fields[9])
        except FileNotFoundError:
            continue
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


def test_database_url():
    """The URL of the database the suite is using now (the test database)."""
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    user = s["USER"] or ""
    password = f":{s['PASSWORD']}" if s["PASSWORD"] else ""
    return f"postgres://{user}{password}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class Server:
    """A child process serving on 127.0.0.1:port; its output goes to a log
    file. With `shared_port` another process may already listen there
    (SO_REUSEPORT): this one is waited for until it listens itself."""

    def __init__(self, args, port, env=None, log_path=None, preexec_fn=None, shared_port=False):
        self.port = port
        self.log_path = Path(log_path or ROOT / "artifacts" / f"server-{port}.log")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=preexec_fn
        )
        try:
            wait_for_port(port, self.process, own=shared_port)
        except Exception:
            self.stop()
            raise

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self):
        return f"ws://127.0.0.1:{self.port}"

    def log(self):
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


def serve(env, port=None, application="booktime.asgi:application", quiet=False, reuse_port=False, **options):
    """An ASGI application in a production worker (booktime.serve, as
    production runs it) with the environment `env`; `quiet` leaves out the
    access log; `reuse_port` lets a worker started later on the same port
    take over from it (docs/operations.md). `options` (log_path, preexec_fn)
    go to Server."""
    port = port or free_port()
    args = [sys.executable, "-m", "booktime.serve", "-b", "127.0.0.1", "-p", str(port)]
    args += ["-v", "0"] if quiet else []
    args += ["--reuse-port"] if reuse_port else []
    return Server(args + [application], port, env=env, shared_port=reuse_port, **options)


def worker(env_overrides=None, port=None, reuse_port=False):
    """Our ASGI application in a production worker on the suite's test database."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="booktime.settings_test",
        DATABASE_URL=test_database_url(),
        PYTHONUNBUFFERED="1",
        SERVE_MEDIA="1",
    )
    env.update(env_overrides or {})
    return serve(env, port, reuse_port=reuse_port)


def courier_standin(port=None, env=None, **options):
    """The courier's stand-in (main.tracker.standin, no Django); `options`
    (log_path, preexec_fn) go to Server."""
    port = port or free_port()
    return Server([sys.executable, "-m", "main.tracker.standin", "--port", str(port)], port, env=env, **options)


class RedisServer:
    """A throwaway redis-server on a loopback port of its own, with no
    persistence (`--save "" --appendonly no`): stop() loses all its data,
    start() brings it back empty on the same port. Never the shared Redis.
    Its log starts empty; `preexec_fn` runs in its process before it starts."""

    def __init__(self, port=None, log_path=None, preexec_fn=None):
        self.port = port or free_port()
        self.process = None
        self.preexec_fn = preexec_fn
        self.log_path = Path(log_path or ROOT / "artifacts" / f"redis-{self.port}.log")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_bytes(b"")  # Redis appends: not a previous instance's lines
        self.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        assert self.process is None or self.process.poll() is not None, "already running"
        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        args += ["--dir", "/tmp", "--logfile", str(self.log_path)]
        self.process = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=self.preexec_fn
        )
        wait_for_port(self.port, self.process)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        """Gone at once, as a crash would leave it (SIGKILL): no data kept."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class PostgresServer:
    """A throwaway PostgreSQL cluster of its own (initdb in a temporary
    directory) on a loopback port of its own, trust authentication: for
    tests that need PostgreSQL to go away. stop() is a crash (`pg_ctl stop
    -m immediate`: every connection dropped at once); start() brings the same
    cluster back on the same port, after crash recovery. Never the shared one.

    PostgreSQL refuses to run as root, so when the tests run as root its
    programs run as the `postgres` user, which owns the directory."""

    BIN = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))[-1])

    def __init__(self, port=None):
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="booktime-pg-"))
        self.data = self.dir / "data"
        self.log_path = ROOT / "artifacts" / f"postgres-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self._user is not None:
            os.chown(self.dir, self._user.pw_uid, self._user.pw_gid)
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()

    def url(self, database="postgres"):
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, program, *args, timeout=60):
        def as_postgres():
            os.setgid(self._user.pw_gid)
            os.setuid(self._user.pw_uid)

        subprocess.run(
            [self.BIN / program, *map(str, args)],
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.dir,
            preexec_fn=as_postgres if self._user is not None else None,
        )

    def start(self):
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} "
            # fsync off: only an operating-system crash could lose data. Commits
            # stay synchronous, so an acknowledged write survives stop().
            "-c fsync=off"
        )
        # The log goes to the cluster's directory (postgres cannot write ours), copied out on close().
        self._run("pg_ctl", "start", "-w", "-D", self.data, "-l", self.dir / "postgres.log", "-o", options)
        wait_for_port(self.port)

    def stop(self):
        """Gone at once, as a crash would leave it: every connection dropped."""
        self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", self.data)

    def running(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def close(self):
        """Stop it and remove the cluster (its log stays in artifacts/)."""
        if (self.data / "postmaster.pid").exists():
            self.stop()
        log = self.dir / "postgres.log"
        if log.exists():
            shutil.copyfile(log, self.log_path)
        shutil.rmtree(self.dir, ignore_errors=True)


def kill(server):
    """SIGKILL a Server's process (a crashed worker); its log stays readable."""
    server.process.kill()
    server.process.wait(10)
