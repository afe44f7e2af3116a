"""Request limits checked before a view runs or the body is read: size (413) and NUL bytes (400)."""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string


class RequestLimitsMiddleware:
    """Refuse what no page of CDP Stage accepts, before Django spools a byte of it.

    - A body over DJANGO_UPLOAD_MAX_MB (413), or over DATA_UPLOAD_MAX_MEMORY_SIZE from someone
      not logged in (only the login form is open to them). Content-Length is all that is
      looked at: under WSGI a body is read only up to it, so a missing header means no body.
      The session is looked up (request.user) without touching the body.
    - A NUL byte in a query parameter (400): PostgreSQL text cannot hold it, so a list filter
      would fail with a 500.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return HttpResponse("The Content-Length header is not a number.", status=400)
        limit = settings.UPLOAD_MAX_BYTES
        if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE and not request.user.is_authenticated:
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if length > limit:
            return HttpResponse(
                render_to_string("request_too_large.html", {"limit_mb": limit / 1_000_000}),
                status=413,
            )
        if any("\x00" in key or "\x00" in "".join(values) for key, values in request.GET.lists()):
            return HttpResponse(
                "A filter or search value contains a NUL character; remove it and try again.",
                status=400,
                content_type="text/plain; charset=utf-8",
            )
        return self.get_response(request)
