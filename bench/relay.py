"""U, the upper bound: a plain WebSocket room relay on the `websockets`
package, no Django. A client connects to /<room>/ and every text frame it
sends goes to everyone in that room, itself included (as a Channels group
does).

    python -m bench.relay --port 9001
"""

import argparse
import asyncio
from collections import defaultdict

from websockets.asyncio.server import broadcast, serve

rooms = defaultdict(set)


async def relay(connection):
    room = connection.request.path
    rooms[room].add(connection)
    try:
        async for frame in connection:
            broadcast(rooms[room], frame)
    finally:
        rooms[room].discard(connection)


async def main(port):
    async with serve(relay, "127.0.0.1", port, max_size=64 * 1024, ping_interval=None):
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
