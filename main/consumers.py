"""The chapter's path to the three consumers; each lives with its feature."""

from .chat.consumer import ChatConsumer
from .dashboard.consumer import ChatNotifyConsumer
from .tracker.consumer import OrderTrackerConsumer

__all__ = ["ChatConsumer", "ChatNotifyConsumer", "OrderTrackerConsumer"]
