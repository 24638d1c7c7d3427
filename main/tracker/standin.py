"""A local stand-in for the courier's tracking API, for the demo and the tests.

A small aiohttp server; it needs no Django, so it can also run as
`python -m main.tracker.standin --port 8001` (or `manage.py run_courier_standin`).

    GET  /track/<order_id>     the order's shipment status, as plain text
    GET  /control              the current configuration and hit counts
    GET  /control/wait?order_id=7&hits=50&timeout=2
                               answers once order 7 has had 50 requests (408 on timeout)
    POST /control              JSON, merged into the configuration:
        {"delay": 0.5, "mode": "ok",                        # every order
         "orders": {"7": {"status": "Delivered", "delay": 1, "mode": "error500"}},
         "reset": true}                                      # back to defaults

Failure modes, to exercise the tracker's error handling:
    ok        200 text/plain status (the default)
    json      200 application/json {"order_id": .., "status": ..}
    badjson   200 application/json that does not parse
    error500, error503   that HTTP status
    garbage   bytes that are not HTTP at all, then close
    close     close the connection without answering
    huge      a 1 MB body
    redirect-away / redirect-home   a 302 to another host (the order's `location`,
              by default an unresolvable one) / to /track/ on this one
`delay` (seconds) is waited before answering; `hang` waits forever.
"""

import argparse
import asyncio

from aiohttp import web

STATUSES = ["Order received", "Packed", "In transit", "Out for delivery", "Delivered"]


def default_status(order_id):
    return STATUSES[order_id % len(STATUSES)]


class Courier:
    def __init__(self, delay=0.0, mode="ok"):
        self.defaults = {"delay": delay, "mode": mode}
        self.reset()

    def reset(self):
        self.config = dict(self.defaults, orders={})
        self.hits = {}
        self.hit = asyncio.Condition()

    def for_order(self, order_id):
        own = self.config["orders"].get(str(order_id), {})
        return {
            "delay": own.get("delay", self.config["delay"]),
            "mode": own.get("mode", self.config["mode"]),
            "status": own.get("status", default_status(order_id)),
            "location": own.get("location", f"http://courier.example.invalid/track/{order_id}"),
        }

    async def track(self, request):
        order_id = int(request.match_info["order_id"])
        self.hits[str(order_id)] = self.hits.get(str(order_id), 0) + 1
        async with self.hit:
            self.hit.notify_all()
        conf = self.for_order(order_id)
        mode = conf["mode"]
        if mode == "hang":
            await asyncio.Event().wait()
        await asyncio.sleep(float(conf["delay"]))
        if mode == "json":
            return web.json_response({"order_id": order_id, "status": conf["status"]})
        if mode == "badjson":
            return web.Response(body=b'{"status": "In tra', content_type="application/json")
        if mode.startswith("error"):
            return web.Response(status=int(mode[5:]), text="courier error")
        if mode in ("garbage", "close"):
            if mode == "garbage":
                request.transport.write(b"\x00\x01 this is not HTTP \xff\r\n\r\n")
            request.transport.close()
            raise asyncio.CancelledError  # nothing more to send on this connection
        if mode == "huge":
            return web.Response(body=b"x" * 1_000_000, content_type="text/plain")
        if mode == "redirect-away":
            raise web.HTTPFound(conf["location"])
        if mode == "redirect-home":
            self.config["orders"].setdefault(str(order_id), {})["mode"] = "ok"
            raise web.HTTPFound(f"/track/{order_id}")
        return web.Response(text=conf["status"])

    async def show_control(self, request):
        return web.json_response(dict(self.config, hits=self.hits))

    async def wait_for_hits(self, request):
        order_id, wanted = request.query["order_id"], int(request.query["hits"])
        try:
            async with asyncio.timeout(float(request.query.get("timeout", 5))), self.hit:
                await self.hit.wait_for(lambda: self.hits.get(order_id, 0) >= wanted)
        except TimeoutError:
            return web.json_response({"hits": self.hits.get(order_id, 0)}, status=408)
        return web.json_response({"hits": self.hits[order_id]})

    async def control(self, request):
        changes = await request.json()
        if changes.pop("reset", False):
            self.reset()
        for order_id, conf in changes.pop("orders", {}).items():
            self.config["orders"].setdefault(str(order_id), {}).update(conf)
        self.config.update({k: v for k, v in changes.items() if k in ("delay", "mode")})
        return await self.show_control(request)


def make_app(delay=0.0, mode="ok"):
    courier = Courier(delay, mode)
    app = web.Application()
    app.add_routes(
        [
            web.get(r"/track/{order_id:\d+}", courier.track),
            web.get("/control", courier.show_control),
            web.get("/control/wait", courier.wait_for_hits),
            web.post("/control", courier.control),
        ]
    )
    return app


def add_arguments(parser):
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before each answer")
    parser.add_argument("--mode", default="ok", help="failure mode for every order (see the module's doc)")


def run(host, port, delay=0.0, mode="ok"):
    print(f"Courier stand-in on http://{host}:{port}/track/<order_id> (delay {delay}s, mode {mode})", flush=True)
    web.run_app(make_app(delay, mode), host=host, port=port, print=None, access_log=None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Stand-in for the courier's tracking API")
    add_arguments(parser)
    args = parser.parse_args()
    run(args.host, args.port, args.delay, args.mode)
