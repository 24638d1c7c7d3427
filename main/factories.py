"""Test and demo data, with the names the chapter's tests import."""

from decimal import Decimal

import factory
import factory.fuzzy

from . import models


class UserFactory(factory.django.DjangoModelFactory):
    email = factory.Sequence(lambda n: f"user{n}@site.com")
    password = factory.django.Password("abcabcabc")

    class Meta:
        model = models.User
        django_get_or_create = ("email",)


class ProductFactory(factory.django.DjangoModelFactory):
    name = factory.Sequence(lambda n: f"Book {n}")
    slug = factory.Sequence(lambda n: f"book-{n}")
    price = factory.fuzzy.FuzzyDecimal(1.0, 1000.0, 2)

    class Meta:
        model = models.Product


class ProductImageFactory(factory.django.DjangoModelFactory):
    product = factory.SubFactory(ProductFactory)
    image = factory.django.ImageField(width=600, height=900, color="navy")

    class Meta:
        model = models.ProductImage


class OrderFactory(factory.django.DjangoModelFactory):
    user = factory.SubFactory(UserFactory)
    billing_name = "John Smith"
    billing_address1 = "1 Main Street"
    billing_zip_code = "N1 1AA"
    billing_city = "London"
    billing_country = "uk"
    shipping_name = factory.SelfAttribute("billing_name")
    shipping_address1 = factory.SelfAttribute("billing_address1")
    shipping_zip_code = factory.SelfAttribute("billing_zip_code")
    shipping_city = factory.SelfAttribute("billing_city")
    shipping_country = factory.SelfAttribute("billing_country")

    class Meta:
        model = models.Order


class OrderLineFactory(factory.django.DjangoModelFactory):
    order = factory.SubFactory(OrderFactory)
    product = factory.SubFactory(ProductFactory, price=Decimal("10.00"))

    class Meta:
        model = models.OrderLine


class EmployeeFactory(UserFactory):
    """An active staff member in the Employees group."""

    email = factory.Sequence(lambda n: f"agent{n}@booktime.domain")
    is_staff = True

    @factory.post_generation
    def employees_group(self, create, extracted, **kwargs):
        if create:
            from django.contrib.auth.models import Group

            group, _ = Group.objects.get_or_create(name=models.EMPLOYEES_GROUP)
            self.groups.add(group)
