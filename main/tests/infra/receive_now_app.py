"""An ASGI app for test_receive_now: it echoes every text message that
reaches its receive(), and sets a RECEIVE_NOW hook that takes "quiet"
(answering "taken" rather than echoing it), fails on "boom" and leaves the
rest; "slow" makes it take a while over the next message it receives,
"count" answers how many the hook has taken."""

import asyncio

from main.infra.server import RECEIVE_NOW


async def application(scope, receive, send):
    if scope["type"] != "websocket":
        return
    taken = []

    def take(text):
        if text == "boom":
            raise RuntimeError("the hook failed")
        if text == "quiet":
            taken.append(text)
            # Told from a task of its own: the hook itself cannot wait.
            asyncio.get_running_loop().create_task(send({"type": "websocket.send", "text": "taken"}))
            return True
        return False

    await receive()  # websocket.connect
    scope["extensions"][RECEIVE_NOW]["text"] = take
    await send({"type": "websocket.accept"})
    slow = False
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if slow:
            await asyncio.sleep(0.2)  # frames read meanwhile are queued, not taken
            slow = False
        if text == "slow":
            slow = True
        answer = str(len(taken)) if text == "count" else text
        await send({"type": "websocket.send", "text": answer})
