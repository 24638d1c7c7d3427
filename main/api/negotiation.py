"""How the API picks a response's format: as DRF does, but a client that
accepts nothing the view renders gets the view's first format (JSON) rather
than a 406, so an answer always comes in the API's shape."""

from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation


class FirstRendererIfNoneAccepted(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            return renderers[0], renderers[0].media_type
