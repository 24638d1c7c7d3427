import math

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from main import access
from main.infra.throttles import LoginPageThrottle


class LoginView(auth_views.LoginView):
    """Django's login page, its wrong passwords counted against the mobile
    API's login throttle (one budget per client address), so guessing here
    is no way around it."""

    def post(self, request, *args, **kwargs):
        self.throttle = LoginPageThrottle()
        if not self.throttle.allow_request(request, self):
            # Refused before the password is checked: the answer is the same
            # whether it was right or not.
            context = self.get_context_data(form=self.get_form_class()(request), throttled=True)
            response = self.render_to_response(context, status=429)
            response["Retry-After"] = str(math.ceil(self.throttle.wait() or 1))
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        self.throttle.count_failure()
        return super().form_invalid(form)


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
