from django.conf import settings
from django.db import migrations


def create_tokens(apps, schema_editor):
    """Users made before the token table existed get one too (new users get
    theirs from the post_save signal). Keys as DRF makes them."""
    from rest_framework.authtoken.models import Token as RealToken

    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    Token = apps.get_model("authtoken", "Token")
    Token.objects.bulk_create(
        [Token(user=user, key=RealToken.generate_key()) for user in User.objects.filter(auth_token__isnull=True)]
    )


class Migration(migrations.Migration):
    dependencies = [
        ("main", "0003_chatmessage"),
        ("authtoken", "0004_alter_tokenproxy_options"),
    ]

    operations = [migrations.RunPython(create_tokens, migrations.RunPython.noop)]
