import pytest

from . import servers


@pytest.fixture
def daphne_server(transactional_db):
    """Start our app under a real daphne on loopback; stopped after the test.
    Call it with env overrides for a non-default configuration."""
    started = []

    def start(env=None):
        server = servers.daphne(env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
