"""booktime.serve's collector: on a real worker, a wave of closed
connections, whose objects are cyclic garbage, is followed by a full
collection (gen 2 in prometheus-client's python_gc_collections_total);
a busy worker's collection waits until it is quiet; collections that
find little come after more closes; and a stopped worker collects no more."""

import asyncio
import gc
import socket
import time

import pytest

from booktime import serve
from booktime.serve import COLLECT_AFTER_CLOSES, COLLECT_AFTER_CLOSES_MAX, FEW_PER_CLOSE

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


async def test_a_due_collection_waits_while_the_worker_is_busy(monkeypatch):
    monkeypatch.setattr(serve, "COLLECT_DELAY_SECONDS", 0.2)
    monkeypatch.setattr(serve, "QUIET_CHECK_SECONDS", 0.1)
    collected = asyncio.Event()

    def seen(phase, info):
        if phase == "stop" and info["generation"] == 2:
            collected.set()

    gc.callbacks.append(seen)
    try:
        collector = serve.Collector()
        for _ in range(COLLECT_AFTER_CLOSES):
            collector.closed()
        busy_until = time.monotonic() + 1.0  # five times the delay, all of it busy
        while time.monotonic() < busy_until:
            work_until = time.monotonic() + 0.02
            while time.monotonic() < work_until:
                pass
            await asyncio.sleep(0)  # the collector's looks run in between
        assert not collected.is_set()
        await asyncio.wait_for(collected.wait(), 5)  # quiet now
    finally:
        gc.callbacks.remove(seen)
    assert collector.pending is None and collector.closes == 0


def cyclic_garbage(count):
    """`count` objects that only the collector can free: lists holding themselves."""
    for _ in range(count):
        cycle = []
        cycle.append(cycle)


def due_collection(collector):
    for _ in range(collector.every):
        collector.closed()
    collector.pending.cancel()  # collected here and now, not by the loop
    collector.collect()


async def test_collections_that_find_little_come_after_more_closes():
    gc.collect()
    collector = serve.Collector()
    due_collection(collector)  # nothing to find
    assert collector.every == 2 * COLLECT_AFTER_CLOSES
    due_collection(collector)
    assert collector.every == 4 * COLLECT_AFTER_CLOSES
    while collector.every < COLLECT_AFTER_CLOSES_MAX:
        due_collection(collector)
    due_collection(collector)
    assert collector.every == COLLECT_AFTER_CLOSES_MAX


async def test_a_collection_that_finds_plenty_brings_the_closes_back():
    gc.collect()
    collector = serve.Collector()
    due_collection(collector)
    assert collector.every == 2 * COLLECT_AFTER_CLOSES
    thresholds = gc.get_threshold()
    gc.set_threshold(10**9)  # the garbage waits for the due collection
    try:
        cyclic_garbage(FEW_PER_CLOSE * collector.every)
        due_collection(collector)
    finally:
        gc.set_threshold(*thresholds)
    assert collector.every == COLLECT_AFTER_CLOSES


async def test_a_stopped_worker_never_collects_again():
    collector = serve.Collector()
    for _ in range(collector.every):
        collector.closed()
    due = collector.pending
    try:
        collector.stop()
        assert due.cancelled() and collector.pending is None and not gc.isenabled()
        for _ in range(2 * collector.every):
            collector.closed()
        assert collector.pending is None  # no full collection is due again
    finally:
        gc.enable()
