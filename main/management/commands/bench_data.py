"""Data for the benchmark: one order per room, its customer and one agent,
with API tokens, written to artifacts/bench-rooms.json as
[[order_id, customer_token, agent_token], ...]; and, for the REST rows, one
user per `--orders` count with that many orders (two lines each), written to
artifacts/bench-orders.json as {"<count>": token}; with `--agents N`, N
employees in all (the agent above first), their tokens written to
artifacts/bench-agents.json."""

import json
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from main import models


class Command(BaseCommand):
    help = "Create (or reuse) benchmark users, orders and tokens."

    def add_arguments(self, parser):
        parser.add_argument("--rooms", type=int, default=500)
        parser.add_argument("--orders", default="10,100,1000", help="orders per REST user, comma-separated")
        parser.add_argument("--agents", type=int, default=1, help="employees in all (the soak's chats share them)")

    def handle(self, *args, rooms, orders, agents, **options):
        from django.core.management import call_command

        call_command("migrate", "--noinput", verbosity=0)
        agent_tokens = [self.employee(k) for k in range(max(1, agents))]
        agent_token = agent_tokens[0]
        out = []
        for n in range(rooms):
            customer, _ = models.User.objects.get_or_create(email=f"bench-customer-{n}@example.com")
            order = models.Order.objects.filter(user=customer).first() or models.Order.objects.create(
                user=customer,
                billing_name="Bench",
                billing_address1="1 Loop",
                billing_zip_code="0",
                billing_city="Loopback",
                billing_country="uk",
                shipping_name="Bench",
                shipping_address1="1 Loop",
                shipping_zip_code="0",
                shipping_city="Loopback",
                shipping_country="uk",
            )
            out.append([order.pk, Token.objects.get_or_create(user=customer)[0].key, agent_token])
        path = Path(settings.BASE_DIR) / "artifacts" / "bench-rooms.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(out))
        self.stdout.write(f"{rooms} rooms in {path}")
        counts = [int(n) for n in orders.split(",") if n.strip()]
        owners = {str(n): self.orders_user(n) for n in counts}
        (path.parent / "bench-orders.json").write_text(json.dumps(owners))
        (path.parent / "bench-agents.json").write_text(json.dumps(agent_tokens))

    def employee(self, k):
        """Employee number k (0: bench-agent@booktime.domain); their token."""
        email = "bench-agent@booktime.domain" if k == 0 else f"bench-agent-{k}@booktime.domain"
        agent, _ = models.User.objects.get_or_create(email=email, defaults={"is_staff": True})
        agent.groups.add(Group.objects.get(name=models.EMPLOYEES_GROUP))
        return Token.objects.get_or_create(user=agent)[0].key

    def orders_user(self, count):
        """A user with exactly `count` orders of two lines each; their token."""
        user, _ = models.User.objects.get_or_create(email=f"bench-orders-{count}@example.com")
        product, _ = models.Product.objects.get_or_create(
            slug="bench-book", defaults={"name": "Bench Book", "price": Decimal("9.50")}
        )
        have = models.Order.objects.filter(user=user).count()
        if have != count:
            models.Order.objects.filter(user=user).delete()
            new = models.Order.objects.bulk_create(
                models.Order(user=user, billing_name="Bench", billing_address1="1 Loop", billing_city="Loopback")
                for _ in range(count)
            )
            models.OrderLine.objects.bulk_create(
                models.OrderLine(order=order, product=product) for order in new for _ in range(2)
            )
        return Token.objects.get_or_create(user=user)[0].key
