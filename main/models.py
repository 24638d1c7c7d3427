from collections import Counter
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.utils.translation import gettext_lazy as _

EMPLOYEES_GROUP = "Employees"
DISPATCHERS_GROUP = "Dispatchers"


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra_fields):
        if not email:
            raise ValueError("The given email must be set")
        email = self.normalize_email(email)
        user = self.model(email=email, **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email, password, **extra_fields):
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        if extra_fields.get("is_staff") is not True:
            raise ValueError("Superuser must have is_staff=True.")
        if extra_fields.get("is_superuser") is not True:
            raise ValueError("Superuser must have is_superuser=True.")
        return self._create_user(email, password, **extra_fields)


def display_name(first_name, last_name, email):
    """What chat shows for a user: the full name (as get_full_name() makes
    it), or the email without one."""
    return f"{first_name} {last_name}".strip() or email


class User(AbstractUser):
    """A BookTime user: customers and staff alike log in with their email."""

    username = None
    email = models.EmailField(_("email address"), unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = []

    objects = UserManager()

    def _in_staff_group(self, name):
        return self.is_active and (self.is_superuser or (self.is_staff and self.groups.filter(name=name).exists()))

    @property
    def is_employee(self):
        return self._in_staff_group(EMPLOYEES_GROUP)

    @property
    def is_dispatcher(self):
        return self._in_staff_group(DISPATCHERS_GROUP)

    @property
    def display_name(self):
        return display_name(self.first_name, self.last_name, self.email)


class ActiveManager(models.Manager):
    def active(self):
        return self.filter(active=True)


class Product(models.Model):
    name = models.CharField(max_length=32)
    description = models.TextField(blank=True)
    price = models.DecimalField(max_digits=6, decimal_places=2)
    slug = models.SlugField(max_length=48, unique=True)
    active = models.BooleanField(default=True)
    in_stock = models.BooleanField(default=True)
    date_updated = models.DateTimeField(auto_now=True)

    objects = ActiveManager()

    def __str__(self):
        return self.name


class ProductImage(models.Model):
    product = models.ForeignKey(Product, on_delete=models.CASCADE)
    image = models.ImageField(upload_to="product-images")
    # Generated from `image` when the image is saved (see signals.py).
    thumbnail = models.ImageField(upload_to="product-thumbnails", null=True, blank=True)

    def __str__(self):
        return f"Image of {self.product}"


def summarise(product_names):
    """'2 x The B Book, 1 x The book of A': one piece per product, in the
    order the products first appear."""
    return ", ".join(f"{count} x {name}" for name, count in Counter(product_names).items())


class OrderQuerySet(models.QuerySet):
    def summaries(self):
        """Each order's id, summary, total_price and thumbnail (the first
        product's, as a storage name, or None) as dicts, in this queryset's
        order, from one query: rows, not model instances, so listing a long
        order history costs a few times a plain .values() (the mobile API's
        my-orders). The same figures as the Order properties below."""
        first_thumbnail = ProductImage.objects.filter(product=models.OuterRef("lines__product")).order_by("pk")
        rows = self.annotate(thumbnail=models.Subquery(first_thumbnail.values("thumbnail")[:1])).values_list(
            "pk", "lines__pk", "lines__product__name", "lines__product__price", "thumbnail"
        )
        lines_by_order = {}
        for order_id, line_id, name, price, thumbnail in rows:
            lines = lines_by_order.setdefault(order_id, [])
            if line_id is not None:  # an order with no lines is one row of NULLs
                lines.append((line_id, name, price, thumbnail))
        summaries = []
        for order_id, lines in lines_by_order.items():
            lines.sort()  # by line id, as Order._lines
            summaries.append(
                {
                    "id": order_id,
                    "summary": summarise(name for _, name, _, _ in lines),
                    "total_price": sum((price for _, _, price, _ in lines), Decimal("0")),
                    "thumbnail": (lines[0][3] or None) if lines else None,
                }
            )
        return summaries

    def with_lines(self):
        """Prefetch what summary, total_price and mobile_thumb_url read:
        a fixed number of queries however many orders and lines."""
        return self.prefetch_related(
            models.Prefetch("lines", queryset=OrderLine.objects.select_related("product")),
            "lines__product__productimage_set",
        )


class Order(models.Model):
    NEW = 10
    PAID = 20
    DONE = 30
    STATUSES = ((NEW, _("New")), (PAID, _("Paid")), (DONE, _("Done")))

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    status = models.IntegerField(choices=STATUSES, default=NEW)

    billing_name = models.CharField(max_length=60)
    billing_address1 = models.CharField(max_length=60)
    billing_address2 = models.CharField(max_length=60, blank=True)
    billing_zip_code = models.CharField(max_length=12)
    billing_city = models.CharField(max_length=60)
    billing_country = models.CharField(max_length=3)

    shipping_name = models.CharField(max_length=60)
    shipping_address1 = models.CharField(max_length=60)
    shipping_address2 = models.CharField(max_length=60, blank=True)
    shipping_zip_code = models.CharField(max_length=12)
    shipping_city = models.CharField(max_length=60)
    shipping_country = models.CharField(max_length=3)

    date_updated = models.DateTimeField(auto_now=True)
    date_added = models.DateTimeField(auto_now_add=True)

    last_spoken_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        related_name="cs_chats",
        on_delete=models.SET_NULL,
    )

    objects = OrderQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["user", "-date_added"])]

    def __str__(self):
        return f"Order {self.pk}"

    # The three properties below read `self.lines.all()`, so a queryset that
    # prefetches lines__product (and its images) computes them with no query
    # per order. See OrderQuerySet.with_lines(), and
    # OrderQuerySet.summaries() for the same figures without instances.

    def _lines(self):
        return sorted(self.lines.all(), key=lambda line: line.pk)

    @property
    def summary(self):
        """'2 x The B Book, 1 x The book of A', one piece per product."""
        return summarise(line.product.name for line in self._lines())

    @property
    def total_price(self):
        return sum((line.product.price for line in self._lines()), Decimal("0"))

    @property
    def mobile_thumb_url(self):
        """Thumbnail URL of the first product's first image, or None."""
        lines = self._lines()
        if lines:
            images = sorted(lines[0].product.productimage_set.all(), key=lambda i: i.pk)
            if images and images[0].thumbnail:
                return images[0].thumbnail.url
        return None


class OrderLine(models.Model):
    NEW = 10
    PROCESSING = 20
    SENT = 30
    CANCELLED = 40
    STATUSES = (
        (NEW, _("New")),
        (PROCESSING, _("Processing")),
        (SENT, _("Sent")),
        (CANCELLED, _("Cancelled")),
    )

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT)
    status = models.IntegerField(choices=STATUSES, default=NEW)

    def __str__(self):
        return f"{self.product} in order {self.order_id}"


class ChatMessage(models.Model):
    """One line of an order's customer-service chat, stored before it is sent
    to anyone. `seq` numbers an order's messages 1, 2, 3... with no gaps, in
    the order they were stored, so a client that has every number up to n
    has everything up to n; within an order, ids follow the same order.
    Messages are stored, and numbered, by main.conversations.store only.

    `client_id` is the sender's own name for a message: a message sent again
    with the same one is stored once (exactly-once send)."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="chat_messages")
    seq = models.PositiveBigIntegerField()
    # A deleted user's lines stay in the customer's chat, without a name.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    text = models.TextField()
    client_id = models.CharField(max_length=64, null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["order", "id"], name="main_chatmsg_order_id")]
        constraints = [
            models.UniqueConstraint(fields=["order", "seq"], name="main_chatmsg_order_seq"),
            models.UniqueConstraint(
                fields=["order", "user", "client_id"],
                condition=models.Q(client_id__isnull=False),
                name="main_chatmsg_client_id",
            ),
        ]

    def __str__(self):
        return f"Chat message {self.pk} in order {self.order_id}"


class ChatReadMarker(models.Model):
    """The last message id a user has read in an order's chat (v2 read markers)."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    last_read_id = models.BigIntegerField(default=0)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["order", "user"], name="main_chatread_order_user")]

    def __str__(self):
        return f"{self.user_id} read order {self.order_id}'s chat up to {self.last_read_id}"


class Conversation(models.Model):
    """An order's customer-service conversation, kept by main.conversations
    from its stored messages (never from presence): `waiting` while the
    customer's latest message has no employee reply after it (since
    `waiting_since`, the first unanswered one), `answered` when nothing
    waits (an employee replied last, or no customer has written yet),
    `resolved` once an employee closed it, until the customer writes again."""

    WAITING, ANSWERED, RESOLVED = "waiting", "answered", "resolved"
    STATUSES = ((WAITING, _("Waiting")), (ANSWERED, _("Answered")), (RESOLVED, _("Resolved")))

    order = models.OneToOneField(Order, primary_key=True, on_delete=models.CASCADE, related_name="conversation")
    status = models.CharField(max_length=8, choices=STATUSES, default=ANSWERED)
    waiting_since = models.DateTimeField(null=True, blank=True)
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_seq = models.PositiveBigIntegerField(default=0)  # the latest message taken into account
    last_employee_seq = models.PositiveBigIntegerField(null=True, blank=True)
    # The latest wait that an employee's reply ended, for the expected wait.
    last_wait_started = models.DateTimeField(null=True, blank=True)
    last_replied_at = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["status", "waiting_since"], name="main_conv_status_waiting"),
            models.Index(fields=["assigned_to", "status"], name="main_conv_assigned_status"),
            models.Index(fields=["last_replied_at"], name="main_conv_replied"),
            models.Index(fields=["status", "-updated"], name="main_conv_status_updated"),  # the inbox's lists
        ]

    def __str__(self):
        return f"Conversation about order {self.order_id}: {self.status}"
