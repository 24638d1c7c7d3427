from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from main import access


def home(request):
    return render(request, "main/home.html")


@login_required
def my_orders(request):
    orders = access.own_orders(request.user).order_by("-date_added").with_lines()
    return render(request, "main/my_orders.html", {"orders": orders})


# The dashboard and the chat page post to the conversations API with the
# session, which needs the CSRF token: these pages always set its cookie.
@ensure_csrf_cookie
@login_required
def dashboard(request):
    if not request.user.is_employee:
        return redirect_to_login(request.get_full_path())
    return render(request, "main/customer_service.html")


@ensure_csrf_cookie
@login_required
def room(request, order_id):
    order = access.visible_order(request.user, order_id)
    if order is None:
        raise Http404("No such chat")
    return render(request, "main/chat_room.html", {"order": order, "room_name_json": order.pk})
