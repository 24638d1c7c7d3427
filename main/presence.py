"""Who is present in which order chat (user-centric, 10 s per heartbeat)."""

from .redis_pool import get_redis

PRESENCE_SECONDS = 10


async def touch(order_id: int, email: str, is_employee: bool) -> None:
    """A heartbeat: `email` is present in order `order_id`'s chat for 10 s."""
    await get_redis().set(f"customer-service_{order_id}_{email}", "1", ex=PRESENCE_SECONDS)
