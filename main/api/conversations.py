"""The conversations API (docs/mobile-api.md, "Conversations"): customers
see and write in their own; employees see all, and claim, release, assign,
resolve and reopen them. Another customer's order and an unknown one get the
same 404 as everywhere."""

from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils.translation import gettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.decorators import api_view, permission_classes, throttle_classes
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle

from main import access, presence
from main.conversations import actions, messages, queue, state, wire
from main.infra import metrics
from main.infra.ids import MAX_ID, parse_id
from main.models import Conversation

from .errors import Refused
from .schema import errors

STATUSES = [value for value, _ in Conversation.STATUSES]
MAX_PAGE = 100


class Person(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class LastMessage(serializers.Serializer):
    seq = serializers.IntegerField()
    username = serializers.CharField()
    message = serializers.CharField()
    at = serializers.DateTimeField()


class Customer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    email = serializers.EmailField()


class Place(serializers.Serializer):
    position = serializers.IntegerField(help_text="1: next to be answered")
    waiting = serializers.IntegerField(help_text="customers waiting in all")
    agents_online = serializers.IntegerField()
    expected_wait_seconds = serializers.IntegerField(allow_null=True)
    message = serializers.CharField(help_text="the same, said for people")


class ConversationSerializer(serializers.Serializer):
    """One conversation as its viewer sees it (the schema; the views build it)."""

    order_id = serializers.IntegerField()
    status = serializers.ChoiceField(STATUSES)
    assigned_to = Person(allow_null=True)
    waiting_since = serializers.DateTimeField(allow_null=True)
    last_message = LastMessage(allow_null=True)
    unread = serializers.IntegerField(help_text="messages from others the viewer has not read")
    updated = serializers.DateTimeField(allow_null=True, help_text="its last change (null: nothing yet)")
    customer = Customer(required=False, help_text="employees only")
    online = serializers.BooleanField(required=False, help_text="employees only: the customer is in the chat now")
    queue = Place(required=False, allow_null=True, help_text="the customer only, while waiting")


class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    seq = serializers.IntegerField()
    username = serializers.CharField()
    message = serializers.CharField()
    created = serializers.DateTimeField()
    employee = serializers.BooleanField()
    mine = serializers.BooleanField()
    client_id = serializers.CharField(required=False, help_text="your own messages only")


class MessagePage(serializers.Serializer):
    messages = MessageSerializer(many=True)
    has_more = serializers.BooleanField()


class Notice(serializers.Serializer):
    code = serializers.CharField(help_text="card_number_masked: a card number in the text was masked")
    detail = serializers.CharField()


class SentMessage(MessageSerializer):
    notices = Notice(many=True, help_text="how the text was changed before it was stored (usually none)")


@extend_schema_field(OpenApiTypes.STR)
class MessageText(serializers.Field):
    """A message's text taken as sent, whatever its type: wire.message_text
    judges it, for the API as for the chat socket."""

    def to_internal_value(self, data):
        return data

    def to_representation(self, value):
        return value


@extend_schema_field(OpenApiTypes.STR)
class ClientId(serializers.Field):
    default_error_messages = {"invalid": "1 to 64 of A-Z a-z 0-9 . _ : -"}

    def to_internal_value(self, data):
        if not wire.valid_client_id(data):
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return value


class Send(serializers.Serializer):
    message = MessageText(required=False, allow_null=True)
    client_id = ClientId(
        required=False,
        help_text="your own name for the message (1-64 of A-Z a-z 0-9 . _ : -): sent again, it is stored once",
    )


class Read(serializers.Serializer):
    seq = serializers.IntegerField(min_value=0, max_value=MAX_ID, help_text="read up to this message")


class Assign(serializers.Serializer):
    user_id = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="an employee")


def visible(request, order_id):
    """The order the caller may see (404 otherwise) and whether they are an employee."""
    employee = access.is_employee(request.user)
    order = access.visible_order(request.user, order_id, employee)
    if order is None:
        raise NotFound()
    return order, employee


def employees_only(employee):
    if not employee:
        raise PermissionDenied(gettext("Employees only."))


def online_orders(order_ids):
    """Which of these orders' customers are in their chat now."""
    if not order_ids:
        return set()
    snapshot = async_to_sync(presence.snapshot)()
    return {p.order_id for p in snapshot.people if not p.is_employee and p.order_id in order_ids}


def shown(items, employee):
    """Items with what only employees, or only the customer, see."""
    if employee:
        online = online_orders({i["order_id"] for i in items})
        for i in items:
            i["online"] = i["order_id"] in online
        return items
    waiting = [i for i in items if i["status"] == Conversation.WAITING]
    line = queue.now() if waiting else None
    for i in items:
        i["queue"] = line.place(i["order_id"]) if i["status"] == Conversation.WAITING else None
    return items


def conversation(request, order, employee):
    found = state.one(request.user, employee, order.pk)
    if found is None:  # no message yet, and never claimed: nothing waits
        found = {
            "order_id": order.pk,
            "status": Conversation.ANSWERED,
            "assigned_to": None,
            "waiting_since": None,
            "last_message": None,
            "unread": 0,
            "updated": None,
        }
        if employee:
            customer = order.user
            found["customer"] = {"id": customer.pk, "name": customer.display_name, "email": customer.email}
    return shown([found], employee)[0]


TAG = ["conversations"]


@extend_schema(
    operation_id="conversations_list",
    tags=TAG,
    parameters=[
        OpenApiParameter("status", enum=STATUSES, description="only conversations in this state"),
        OpenApiParameter("assigned", str, description='employees: "me", "none" or an employee\'s user id'),
        OpenApiParameter("limit", int, description=f"at most this many (default {state.LIST_LIMIT})"),
    ],
    responses={200: ConversationSerializer(many=True), 400: errors("invalid"), 401: errors("not_authenticated")},
)
@api_view(["GET"])
@permission_classes((IsAuthenticated,))
def conversation_list(request):
    """The caller's conversations (an employee's: everyone's), waiting ones
    first, the longest wait first; then the latest change first."""
    employee = access.is_employee(request.user)
    wanted = request.query_params.get("status")
    if wanted is not None and wanted not in STATUSES:
        raise ValidationError({"status": [gettext("One of: %(statuses)s.") % {"statuses": ", ".join(STATUSES)}]})
    assigned = request.query_params.get("assigned")
    if assigned not in (None, "me", "none") and parse_id(assigned) is None:
        raise ValidationError({"assigned": [gettext('"me", "none" or a user id.')]})
    limit = parse_id(request.query_params.get("limit", state.LIST_LIMIT))
    if limit is None:
        raise ValidationError({"limit": [gettext("A positive whole number.")]})
    limit = min(limit, state.MAX_LIST_LIMIT)
    items = state.listing(request.user, employee, wanted, assigned if employee else None, limit)
    return Response(shown(items, employee))


@extend_schema(
    operation_id="conversations_read_one",
    tags=TAG,
    responses={200: ConversationSerializer, 404: errors("not_found")},
)
@api_view(["GET"])
@permission_classes((IsAuthenticated,))
def conversation_detail(request, order_id):
    """One conversation."""
    order, employee = visible(request, order_id)
    return Response(conversation(request, order, employee))


def page_bound(request, name):
    value = request.query_params.get(name)
    if value is None:
        return None
    parsed = parse_id(value, minimum=0)
    if parsed is None:
        raise ValidationError({name: [gettext("A message seq: a whole number, 0 or more.")]})
    return parsed


class SendThrottle(UserRateThrottle):
    """Messages sent through the API, per user (CHAT_API_SEND_RATE)."""

    scope = "chat-send"

    def allow_request(self, request, view):
        if request.method != "POST":
            return True
        if super().allow_request(request, view):
            return True
        metrics.throttled("chat_send")
        return False


@extend_schema(
    methods=["GET"],
    operation_id="conversations_messages",
    tags=TAG,
    parameters=[
        OpenApiParameter("after_seq", int, description="the messages after this seq, oldest first"),
        OpenApiParameter("before_seq", int, description="the latest messages before this seq"),
        OpenApiParameter("limit", int, description=f"at most this many (default and most {MAX_PAGE})"),
    ],
    responses={200: MessagePage, 400: errors("invalid"), 404: errors("not_found")},
)
@extend_schema(
    methods=["POST"],
    operation_id="conversations_send",
    tags=TAG,
    request=Send,
    responses={
        201: SentMessage,
        200: SentMessage,
        400: errors("invalid", "empty_message", "too_long", "bad_message"),
        404: errors("not_found"),
        429: errors("throttled"),
    },
    description=(
        "Send a message, stored before it reaches anyone: 201 with the stored message, or 200 with the "
        "message stored before under the same `client_id` (sent again after a lost answer: stored once). "
        "A payment card number in the text is stored masked but for its last four digits, and `notices` "
        "says so."
    ),
)
@api_view(["GET", "POST"])
@permission_classes((IsAuthenticated,))
@throttle_classes((SendThrottle,))
def conversation_messages(request, order_id):
    """A page of the conversation's messages (GET), or a message sent (POST)."""
    order, employee = visible(request, order_id)
    if request.method == "POST":
        return send(request, order)
    limit = parse_id(request.query_params.get("limit", MAX_PAGE))
    if limit is None:
        raise ValidationError({"limit": [gettext("A positive whole number.")]})
    page, has_more = messages.page(
        order.pk,
        order.user_id,
        page_bound(request, "after_seq"),
        page_bound(request, "before_seq"),
        min(limit, MAX_PAGE),
    )
    return Response({"messages": [as_seen(m, request.user) for m in page], "has_more": has_more})


def as_seen(event, user):
    """A message as the API shows it to `user`: the v2 chat_message without `type`."""
    shown = wire.as_seen_by(event, user.pk)
    shown.pop("type")
    return shown


def send(request, order):
    body = Send(data=request.data)
    body.is_valid(raise_exception=True)
    try:
        text, notices = wire.message_text(body.validated_data.get("message"), settings.CHAT_MAX_MESSAGE_CHARS)
    except wire.Refused as refused:
        raise Refused(refused.detail, refused.code) from None
    stored = actions.send(order, request.user, text, body.validated_data.get("client_id"))
    if stored.fresh:
        metrics.API_MESSAGES_STORED.inc()
    event = messages.message_event(stored.message, order.user_id, request.user.display_name)
    answer = as_seen(event, request.user)
    answer["notices"] = [{"code": code, "detail": gettext(wire.NOTICES[code])} for code in notices]
    return Response(answer, status=status.HTTP_201_CREATED if stored.fresh else status.HTTP_200_OK)


@extend_schema(
    operation_id="conversations_mark_read",
    tags=TAG,
    request=Read,
    responses={200: ConversationSerializer, 400: errors("invalid"), 404: errors("not_found")},
)
@api_view(["POST"])
@permission_classes((IsAuthenticated,))
def conversation_read(request, order_id):
    """The caller has read the conversation up to message `seq` (read markers only move forward)."""
    order, employee = visible(request, order_id)
    body = Read(data=request.data)
    body.is_valid(raise_exception=True)
    actions.read(order.pk, request.user, body.validated_data["seq"])
    return Response(conversation(request, order, employee))


def employee_action(operation_id, doc, act, request_body=None, extra_errors=()):
    """A view of an employees-only action; it answers the conversation as it is after."""

    @extend_schema(
        operation_id=operation_id,
        tags=TAG,
        request=request_body,
        responses={
            200: ConversationSerializer,
            403: errors("permission_denied"),
            404: errors("not_found"),
            **dict(extra_errors),
        },
        description=doc,
    )
    @api_view(["POST"])
    @permission_classes((IsAuthenticated,))
    def view(request, order_id):
        order, employee = visible(request, order_id)
        employees_only(employee)
        try:
            act(request, order)
        except actions.Held as held:
            assigned_to = state.person(held.holder)
            raise Refused(str(held), "held", status.HTTP_409_CONFLICT, assigned_to=assigned_to) from None
        return Response(conversation(request, order, employee))

    return view


def assign(request, order):
    body = Assign(data=request.data)
    body.is_valid(raise_exception=True)
    try:
        actions.assign(order.pk, body.validated_data["user_id"])
    except actions.NotAnEmployee:
        raise ValidationError({"user_id": [gettext("Not an employee.")]}) from None


HELD = (409, errors("held: someone else holds it; `assigned_to` says who"))

conversation_claim = employee_action(
    "conversations_claim",
    "Hold the conversation (409 if someone else does).",
    lambda request, order: actions.claim(order.pk, request.user),
    extra_errors=[HELD],
)
conversation_release = employee_action(
    "conversations_release",
    "Let go of a conversation you hold (409 if someone else holds it).",
    lambda request, order: actions.release(order.pk, request.user),
    extra_errors=[HELD],
)
conversation_assign = employee_action(
    "conversations_assign",
    "Hand the conversation to an employee.",
    assign,
    request_body=Assign,
    extra_errors=[(400, errors("invalid"))],
)
conversation_resolve = employee_action(
    "conversations_resolve",
    "Close the conversation; the customer's next message opens it again.",
    lambda request, order: actions.resolve(order.pk),
)
conversation_reopen = employee_action(
    "conversations_reopen",
    "Open a resolved conversation again.",
    lambda request, order: actions.reopen(order.pk),
)

# What a conversation's URL takes after its order id, each a POST.
ACTIONS = {
    "read": conversation_read,
    "claim": conversation_claim,
    "release": conversation_release,
    "assign": conversation_assign,
    "resolve": conversation_resolve,
    "reopen": conversation_reopen,
}
