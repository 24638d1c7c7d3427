"""Password attempts on the mobile API share one throttle per client address,
whatever the form (token login or HTTP Basic) and whatever X-Forwarded-For says."""

import base64

import pytest
from django.core.cache import cache
from django.urls import reverse
from rest_framework.test import APIClient

from main import factories

RATE = 10  # MOBILE_LOGIN_RATE's default, per minute


@pytest.fixture
def client_at(db):
    """An API client from its own address, with a fresh throttle count."""

    def make(address):
        cache.delete(f"throttle_mobile-login_{address}")
        return APIClient(REMOTE_ADDR=address)

    return make


def basic(email, password):
    return "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()


def test_http_basic_guesses_are_throttled(client_at):
    factories.UserFactory(email="victim@site.com")
    api = client_at("203.0.113.10")
    statuses = [
        api.get(reverse("mobile_my_orders"), HTTP_AUTHORIZATION=basic("victim@site.com", f"guess{n}")).status_code
        for n in range(RATE + 2)
    ]
    assert statuses[:RATE] == [401] * RATE
    assert statuses[RATE:] == [429, 429]
    # The budget is shared with the token login.
    response = api.post(reverse("mobile_token"), {"username": "victim@site.com", "password": "abcabcabc"})
    assert response.status_code == 429


def test_a_forged_forwarded_for_header_does_not_reset_the_count(client_at):
    api = client_at("203.0.113.11")
    statuses = [
        api.post(
            reverse("mobile_token"),
            {"username": "nobody@site.com", "password": "x"},
            HTTP_X_FORWARDED_FOR=f"198.51.100.{n}",
        ).status_code
        for n in range(RATE + 1)
    ]
    assert statuses == [400] * RATE + [429]


def test_basic_with_the_right_password_still_works(client_at):
    factories.UserFactory(email="basic@site.com")
    api = client_at("203.0.113.12")
    response = api.get(reverse("mobile_my_orders"), HTTP_AUTHORIZATION=basic("basic@site.com", "abcabcabc"))
    assert response.status_code == 200 and response.json() == []
