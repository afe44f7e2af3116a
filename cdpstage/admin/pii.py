"""Who is looking, on each row an admin shows: personal data shown or masked per request."""

from django.db.models import BooleanField, Value

from records.masking import can_view_pii


class ViewerPiiMixin:
    """Annotates every row the admin loads with `viewer_sees_pii` for the current request.

    Display methods get no request, and the ModelAdmin instance is shared by every request
    (and thread) of the process, so the answer cannot be kept on `self`: it travels on the rows.
    """

    def get_queryset(self, request):
        sees = can_view_pii(request.user)
        return (
            super()
            .get_queryset(request)
            .annotate(viewer_sees_pii=Value(sees, output_field=BooleanField()))
        )
