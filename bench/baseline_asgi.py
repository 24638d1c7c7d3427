"""B, the baseline a Django developer would write: the Channels tutorial's
chat consumer (no auth, no storage, no presence) on the same ASGI server,
channel layer and Redis as the product.

    python -m booktime.serve -p 9002 bench.baseline_asgi:application
"""

import json
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "booktime.settings")
get_asgi_application()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class TutorialChatConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.room_group_name = "chat_" + self.scope["url_route"]["kwargs"]["room_name"]
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, close_code):
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    async def receive(self, text_data):
        message = json.loads(text_data)["message"]
        await self.channel_layer.group_send(self.room_group_name, {"type": "chat.message", "message": message})

    async def chat_message(self, event):
        await self.send(text_data=json.dumps({"message": event["message"]}))


application = ProtocolTypeRouter(
    {"websocket": URLRouter([path("ws/chat/<str:room_name>/", TutorialChatConsumer.as_asgi())])}
)
