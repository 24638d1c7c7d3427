"""The base of our consumers, mixed in before one of Channels' generic ones."""

import contextlib
import functools
import logging

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from redis.exceptions import RedisError

from . import answers, metrics
from .dispatch import dispatch_all
from .server import RECEIVE_NOW

logger = logging.getLogger(__name__)


class BaseConsumer:
    """What our consumers do differently from Channels' AsyncConsumer:

    - Dispatch without Channels' connection sweep: since 4.2 Channels runs
      close_old_connections() in its one sync thread before every message, a
      thread hop per frame and per group event. Our consumers reach the
      database only through main.infra.db, which closes what it opens.
    - Dispatch with dispatch_all, one long-lived task per message source.
    - As a consumer ends, the channel layer lets go of its channel, which
      channels_redis misses when the consumer ends on a channel message
      (main.infra.channel_layer.PubSubChannelLayer.delete_channel), and the
      consumer lets go of its send.
    - Also callable the Channels 2 way, as the chapter's tests use a
      consumer class: `Consumer(scope)`, then `await instance(receive, send)`.
    """

    def __init__(self, scope=None, **kwargs):
        super().__init__(**kwargs)
        self._asgi2_scope = scope

    async def __call__(self, scope, receive=None, send=None):
        try:
            if send is None:  # ASGI 2: called with (receive, send)
                return await self.consume(self._asgi2_scope, scope, receive)
            return await self.consume(scope, receive, send)
        finally:
            # A consumer's send may be its own closure: letting go of it
            # frees the consumer as it ends, not at the collector's next full
            # collection.
            self.base_send = None
            delete_channel = getattr(getattr(self, "channel_layer", None), "delete_channel", None)
            if delete_channel is not None and getattr(self, "channel_name", None):
                await delete_channel(self.channel_name)

    async def consume(self, scope, receive, send):
        """Channels' AsyncConsumer.__call__, dispatching with dispatch_all."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        sources = [receive]
        if self.channel_layer is not None:
            try:
                self.channel_name = await self.channel_layer.new_channel()
            except (RedisError, OSError) as error:
                # The channel layer's Redis is out of reach: refused cleanly
                # (4503 or 503), nothing left behind.
                logger.warning("%s %s: channel layer unavailable (%s)", scope["type"], scope.get("path"), error)
                if scope["type"] == "websocket":
                    metrics.handshake_refused("redis_unavailable")
                return await answers.unavailable(scope, receive, send)
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            sources.append(self.channel_receive)
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            await dispatch_all(sources, self.dispatch)

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    def receive_now(self, take):
        """Asks the server to call `take(text)` with a small text frame as it
        is read while this consumer waits for a message (True: handled, not
        queued). Only our uvicorn protocol offers it (main.infra.server's
        RECEIVE_NOW); elsewhere every message comes through receive."""
        hooks = self.scope.get("extensions", {}).get(RECEIVE_NOW)
        if hooks is not None:
            hooks["text"] = take

    async def channel_layer_lost(self, message):
        pass  # only a consumer in groups has missed anything
