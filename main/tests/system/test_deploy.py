"""Production serving: the shipped nginx config in front of two workers."""

import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from harness import servers

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_config(tmp_path, port, worker_ports):
    """The shipped deploy/nginx.conf, made to run unprivileged on loopback:
    plain HTTP on `port`, our workers upstream, logs and paths under tmp_path."""
    site = (servers.ROOT / "deploy" / "nginx.conf").read_text()
    site = re.sub(r"server \{\s*listen 80;.*?\n\}\n", "", site, flags=re.S)  # the TLS redirect
    site, found = re.subn(r"listen 443 ssl( backlog=\d+)?;", rf"listen 127.0.0.1:{port}\1;", site)
    assert found == 1, "deploy/nginx.conf's `listen 443 ssl` line changed: update this test"
    site = re.sub(r"\n\s*(listen \[::\]:443 ssl[^;]*|ssl_certificate\S* [^\n]*);", "", site)
    upstream = "".join(f"    server 127.0.0.1:{p} max_fails=0;\n" for p in worker_ports)
    site = re.sub(r"(    server 127\.0\.0\.1:81\d\d max_fails=0;\n)+", upstream, site)
    site = site.replace("/var/log/nginx/", f"{tmp_path}/").replace("/srv/booktime/", f"{tmp_path}/")
    config = tmp_path / "nginx.conf"
    config.write_text(
        f"daemon off;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n include /etc/nginx/mime.types;\n client_body_temp_path {tmp_path};\n"
        f" proxy_temp_path {tmp_path};\n{site}\n}}\n"
    )
    return config


@pytest.fixture
def proxied(worker_server, tmp_path):
    """nginx on a free port in front of two real workers (booktime.serve)."""
    assert servers.Path(NGINX).exists(), "nginx is not installed (scripts/install --dev installs it)"
    workers = [worker_server(), worker_server()]
    port = servers.free_port()
    config = nginx_config(tmp_path, port, [w.port for w in workers])
    check = subprocess.run([NGINX, "-t", "-c", str(config)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    proxy = servers.Server([NGINX, "-c", str(config)], port, log_path=tmp_path / "nginx.out")
    yield proxy, workers, tmp_path
    proxy.stop()


def test_nginx_spreads_requests_over_workers_and_no_log_shows_the_query_string(proxied):
    proxy, workers, tmp_path = proxied
    for _ in range(4):
        with urllib.request.urlopen(f"{proxy.url}/login/?token=s3cret-token", timeout=10) as response:
            assert response.status == 200
    served = [w.log().count("/login/") for w in workers]
    assert all(served), f"each worker should have served some requests: {served}"

    access_log = (tmp_path / "booktime.access.log").read_text()
    assert "GET /login/" in access_log
    assert "s3cret" not in access_log
    for worker in workers:  # the worker's own access log
        assert '"GET /login/ HTTP/1.' in worker.log() and "s3cret" not in worker.log()


def test_no_nginx_log_shows_a_token_when_a_worker_is_down_or_a_file_missing(worker_server, tmp_path):
    """nginx puts the whole request line in its error-level lines: a worker
    that is down (a restart, a crash) or a missing static file must not
    write the query string to any log."""
    worker, down = worker_server(), servers.free_port()
    port = servers.free_port()
    config = nginx_config(tmp_path, port, [down, worker.port])
    proxy = servers.Server([NGINX, "-c", str(config)], port, log_path=tmp_path / "nginx.out")
    try:
        for _ in range(4):  # nginx tries the worker that is down on some, then the other
            with urllib.request.urlopen(f"{proxy.url}/login/?token=s3cret-token", timeout=10) as response:
                assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{proxy.url}/static/missing.css?token=s3cret-token", timeout=10)
        assert missing.value.code in (403, 404)
    finally:
        proxy.stop()
    logs = {path.name: path.read_text() for path in tmp_path.iterdir() if path.suffix in (".log", ".out")}
    assert "booktime.access.log" in logs and "error.log" in logs
    for name, text in logs.items():
        assert "s3cret" not in text, f"{name}: {text}"
    # The worker that was down still shows, in the access log.
    assert f"upstream=127.0.0.1:{down}, 127.0.0.1:{worker.port} upstream_status=502, 200" in logs["booktime.access.log"]


def test_check_deploy_is_clean_with_production_settings():
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DJANGO_SETTINGS_MODULE")}
    env.update(
        DEBUG="0",
        HTTPS="1",
        SECRET_KEY="x" * 20 + "-production-like-secret-key-of-decent-length-1234567890",
        ALLOWED_HOSTS="cs.booktime.example",
        CSRF_TRUSTED_ORIGINS="https://cs.booktime.example",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=servers.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
