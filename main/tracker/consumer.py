"""mobile-api/my-orders/<order_id>/tracker/: the courier's status for an
order, for its owner only (docs/mobile-api.md)."""

import logging

from channels.generic.http import AsyncHttpConsumer

from main import access
from main.infra import answers
from main.infra.auth import database_unavailable
from main.infra.consumer import BaseConsumer
from main.infra.db import db_sync_to_async, unreachable

from . import courier

logger = logging.getLogger(__name__)

NOT_FOUND = {"detail": "Not found.", "code": "not_found"}

# An independent read: requests run side by side in the thread pool.
tracking_owner = db_sync_to_async(access.tracking_owner, thread_sensitive=False)


class OrderTrackerConsumer(BaseConsumer, AsyncHttpConsumer):
    """The courier is called without blocking the event loop, within
    COURIER_API_TIMEOUT; its failures become a 502 or 504."""

    # A plain request/response proxy: no channel on the channel layer.
    channel_layer_alias = None

    async def query_remote_server(self, order_id):
        return await courier.fetch_status(order_id)

    async def handle(self, body):
        if self.scope.get("method", "GET") != "GET":
            error = {"detail": "Only GET is allowed.", "code": "method_not_allowed"}
            return await answers.respond_json(self.send, 405, error, (b"Allow", b"GET"))
        order_id = self.scope["url_route"]["kwargs"]["order_id"]
        try:
            owner_id = await tracking_owner(self.scope.get("user"), self.scope.get("unchecked_token"), order_id)
        except Exception as error:
            if not unreachable(error):
                raise
            return await database_unavailable(self.scope, None, self.send)
        if owner_id is None:
            # Same answer for someone else's order, an unknown id, a bad
            # token and no login: order ids cannot be probed, and the courier
            # is not asked.
            return await answers.respond_json(self.send, 404, NOT_FOUND)
        logger.info("Order tracking request for user %s and order %s", owner_id, order_id)
        try:
            payload = await self.query_remote_server(order_id)
        except courier.CourierError as exc:
            logger.warning("Order tracking failed for order %s: %s", order_id, exc)
            return await answers.respond_json(self.send, exc.status, {"detail": str(exc), "code": exc.code})
        content_type = getattr(payload, "content_type", courier.TEXT)
        await answers.respond(self.send, 200, payload, content_type)
