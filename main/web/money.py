"""Money as the reader's locale writes it, in the shop's CURRENCY (a setting,
never a symbol in a template): `{% load money %}{{ order.total_price|money }}`
in a template, format_money() in Python. Babel knows each locale's symbols,
separators and where the sign goes: "£12.50", "€12,50" or "US$12.50"."""

from babel.numbers import format_currency
from django import template
from django.conf import settings
from django.utils import translation

register = template.Library()


def babel_locale(language=None):
    """Django's language code as Babel's locale: "en-gb" -> "en_GB", "zh-hans" -> "zh_Hans"."""
    return translation.to_locale(language or translation.get_language() or settings.LANGUAGE_CODE)


def format_money(amount, currency=None, language=None):
    """`amount` in `currency` (the CURRENCY setting by default), written for
    `language` (the active one by default)."""
    return format_currency(amount, currency or settings.CURRENCY, locale=babel_locale(language))


@register.filter
def money(amount):
    """{{ amount|money }}: the amount in the shop's currency, for the reader's locale."""
    if amount is None or amount == "":
        return ""
    return format_money(amount)
