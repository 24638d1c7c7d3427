"""What every page's template is given: the shop's currency, which the
pages' scripts read from <html data-currency> (docs/translations.md)."""

from django.conf import settings


def site(request):
    return {"CURRENCY": settings.CURRENCY}
