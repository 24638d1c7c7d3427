"""`manage.py run_courier_standin --port 8001`: the courier stand-in (see
main/tracker/standin.py), so the order tracker works offline."""

from django.core.management.base import BaseCommand

from main.tracker import standin as courier_standin


class Command(BaseCommand):
    help = "Run a local stand-in for the courier's tracking API."
    requires_system_checks = []

    def add_arguments(self, parser):
        courier_standin.add_arguments(parser)

    def handle(self, *args, **options):
        courier_standin.run(options["host"], options["port"], options["delay"], options["mode"])
