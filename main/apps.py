from django.apps import AppConfig


class MainConfig(AppConfig):
    name = "main"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from axes.signals import user_locked_out

        from . import access, signals  # noqa: F401  (connects the receivers)
        from .infra import channel_layer, metrics, scrape
        from .presence import gauges

        scrape.on_scrape(gauges.read)  # presence's numbers, read as the metrics are scraped
        # The login throttle's refusals, counted (django-axes).
        user_locked_out.connect(metrics.login_throttled, dispatch_uid="metrics.login_throttled")
        scrape.on_scrape(channel_layer.count_channels)
