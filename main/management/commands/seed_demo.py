"""Demo data: an employee, two customers, products with covers, orders.

Safe to run again: it finds what it made before instead of making it twice.
"""

from decimal import Decimal
from io import BytesIO

from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand
from PIL import Image, ImageDraw, ImageFont

from main import models

PASSWORD = "booktime-demo"
EMPLOYEE = ("agent@booktime.domain", "Adam", "Ford")
ADMIN = ("admin@booktime.domain", "Ada", "Admin")
CUSTOMERS = [
    ("john@bestemails.com", "John", "Smith"),
    ("mary_jones@example.com", "", ""),  # underscore in the email, no full name
]
PRODUCTS = [
    ("The book of A", "12.00", "#1d4ed8"),
    ("The B Book", "14.00", "#b45309"),
    ("Cooking for Coders", "21.50", "#15803d"),
    ("Django in Practice", "32.00", "#7c3aed"),
]
ORDERS = {  # customer email -> one list of product names per order
    "john@bestemails.com": [["The book of A", "The book of A"], ["The B Book", "Django in Practice"]],
    "mary_jones@example.com": [["Cooking for Coders"]],
}


def cover_image(title, colour):
    """A 600x900 book cover: a coloured board with the title on it."""
    image = Image.new("RGB", (600, 900), colour)
    draw = ImageDraw.Draw(image)
    draw.rectangle((30, 30, 570, 870), outline="white", width=6)
    font = ImageFont.load_default(size=56)
    words, lines = title.split(), [""]
    for word in words:
        trial = f"{lines[-1]} {word}".strip()
        if draw.textlength(trial, font=font) > 480 and lines[-1]:
            lines.append(word)
        else:
            lines[-1] = trial
    y = 300
    for line in lines:
        draw.text((300, y), line, fill="white", font=font, anchor="mm")
        y += 80
    draw.text((300, 800), "BookTime Press", fill="white", font=ImageFont.load_default(size=28), anchor="mm")
    buffer = BytesIO()
    image.save(buffer, "PNG")
    return ContentFile(buffer.getvalue())


class Command(BaseCommand):
    help = "Create demo users, products and orders (idempotent) and print how to log in."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def user(self, email, first, last, **flags):
        user, created = models.User.objects.get_or_create(
            email=email, defaults={"first_name": first, "last_name": last, **flags}
        )
        if created:
            user.set_password(PASSWORD)
            user.save()
        return user

    def handle(self, *args, base_url, **options):
        employees = Group.objects.get(name=models.EMPLOYEES_GROUP)
        employee = self.user(*EMPLOYEE, is_staff=True)
        employee.groups.add(employees)
        self.user(*ADMIN, is_staff=True, is_superuser=True)
        customers = [self.user(*c) for c in CUSTOMERS]

        products = {}
        for name, price, colour in PRODUCTS:
            slug = name.lower().replace(" ", "-")
            product, _ = models.Product.objects.get_or_create(
                slug=slug,
                defaults={"name": name, "price": Decimal(price), "description": f"{name}, a BookTime favourite."},
            )
            if not product.productimage_set.exists():
                image = models.ProductImage(product=product)
                image.image.save(f"{slug}.png", cover_image(name, colour), save=False)
                image.save()  # the thumbnail is generated on save
            products[name] = product

        for customer in customers:
            if customer.order_set.exists():
                continue
            for product_names in ORDERS[customer.email]:
                order = models.Order.objects.create(
                    user=customer,
                    billing_name=customer.display_name,
                    billing_address1="1 Bookshop Lane",
                    billing_zip_code="N1 1AA",
                    billing_city="London",
                    billing_country="uk",
                    shipping_name=customer.display_name,
                    shipping_address1="1 Bookshop Lane",
                    shipping_zip_code="N1 1AA",
                    shipping_city="London",
                    shipping_country="uk",
                )
                for name in product_names:
                    models.OrderLine.objects.create(order=order, product=products[name])

        out = self.stdout.write
        out(self.style.SUCCESS(f"Demo data ready. Every password is: {PASSWORD}"))
        out(f"  employee  {employee.email}   dashboard: {base_url}/customer-service/")
        out(f"  admin     {ADMIN[0]}   admin:     {base_url}/admin/")
        for customer in customers:
            order_ids = ", ".join(str(pk) for pk in customer.order_set.order_by("pk").values_list("pk", flat=True))
            out(f"  customer  {customer.email}   orders {order_ids}: {base_url}/my-orders/")
        first_order = models.Order.objects.filter(user=customers[0]).order_by("pk").first()
        out(f"Log in at {base_url}/login/ ; a chat: {base_url}/customer-service/{first_order.pk}/")
