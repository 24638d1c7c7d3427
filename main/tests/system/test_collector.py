"""booktime.serve's collector on a real worker: a wave of closed
connections, whose objects are cyclic garbage, is followed by a full
collection (gen 2 in prometheus-client's python_gc_collections_total)."""

import socket

import pytest

from booktime.serve import COLLECT_AFTER_CLOSES

from .test_health import TOKEN, scrape, scraped_until, value

pytestmark = pytest.mark.django_db(transaction=True)


def full_collections(text):
    return value(text, "python_gc_collections_total", generation="2")


def test_a_full_collection_follows_a_wave_of_closed_connections(worker_server):
    server = worker_server({"METRICS_TOKEN": TOKEN})
    before = full_collections(scrape(server))
    for _ in range(COLLECT_AFTER_CLOSES):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    scraped_until(server, lambda text: full_collections(text) > before)
