import logging
from io import BytesIO

from django.conf import settings
from django.core.files.base import ContentFile
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from PIL import Image
from rest_framework.authtoken.models import Token

from .models import ProductImage

THUMBNAIL_SIZE = (300, 300)

logger = logging.getLogger(__name__)


@receiver(pre_save, sender=ProductImage)
def generate_thumbnail(sender, instance, **kwargs):
    """(Re)make the thumbnail whenever the image is new or has changed."""
    if not instance.image:
        return
    if instance.pk and instance.thumbnail:
        previous = ProductImage.objects.filter(pk=instance.pk).values_list("image", flat=True).first()
        if previous == instance.image.name:
            return
    logger.info("Generating thumbnail for product %d", instance.product_id)
    image = Image.open(instance.image)
    image = image.convert("RGB")
    image.thumbnail(THUMBNAIL_SIZE, Image.Resampling.LANCZOS)
    buffer = BytesIO()
    image.save(buffer, "JPEG", quality=85)
    name = instance.image.name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    instance.thumbnail.save(f"{name}.jpg", ContentFile(buffer.getvalue()), save=False)


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def create_auth_token(sender, instance=None, created=False, **kwargs):
    """Every new user gets a token for the mobile API."""
    if created:
        Token.objects.create(user=instance)
