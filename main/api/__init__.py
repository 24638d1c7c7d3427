"""The mobile app's REST API (Django REST framework): views.py, its errors
(errors.py) and its OpenAPI description (schema.py). docs/mobile-api.md."""
