"""Admin for erasure: deletion requests (taken here, sent in batches) and the suppression list."""

from django import forms
from django.contrib import admin, messages
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from cdpstage.admin.pii import ViewerPiiMixin
from cdpstage.admin.readonly import ReadOnlyAdmin
from cdpstage.errors import ApplicationError
from records.masking import mask_identity_key
from records.models import GuestDeletion, SuppressedIdentity
from records.selectors import identity_provider_names, live_batch_of
from records.services.erasure import guest_deletion_request


class DeletionRequestForm(forms.Form):
    provider = forms.ChoiceField(help_text="The identity provider of the identifier.")
    identifier = forms.CharField(max_length=255, help_text="The person's id at that provider.")
    gdpr = forms.BooleanField(
        required=False,
        label="GDPR delete",
        help_text="gdpr_delete also removes the person's orders; delete keeps them.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = [(name, name) for name in identity_provider_names()]


@admin.register(GuestDeletion)
class GuestDeletionAdmin(ViewerPiiMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "mode",
        "erasure_status",
        "identifiers_display",
        "rounds",
        "erasure_message",
        "delivery_status",
        "requested_by",
        "created_at",
        "completed_at",
    )
    list_filter = ("erasure_status", "mode")
    fields = (
        "ref",
        "mode",
        "erasure_status",
        "identifiers_display",
        "rounds",
        "erasure_message",
        "review_status",
        "delivery_status",
        "live_batch_display",
        "requested_by",
        "created_at",
        "completed_at",
    )
    readonly_fields = fields
    ordering = ("-id",)

    @admin.display(description="live batch")
    def live_batch_display(self, obj):
        batch = live_batch_of(model=GuestDeletion, record_id=obj.pk)
        return "-" if batch is None else f"Batch {batch}"

    @admin.display(description="identifiers")
    def identifiers_display(self, obj):
        if not obj.identifiers:
            return "Cleared (request done; only hashes are kept)"
        shown = [f"{item.get('provider')}:{item.get('id')}" for item in obj.identifiers]
        if not obj.viewer_sees_pii:
            shown = [mask_identity_key(text) for text in shown]
        return ", ".join(shown)

    def has_change_permission(self, request, obj=None):
        # Only CDP's outcome changes a request (records.services.erasure).
        return False

    def has_delete_permission(self, request, obj=None):
        # A request is the record that the person asked and what was done: kept for good.
        return False

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            return redirect(reverse("admin:records_guestdeletion_changelist"))
        form = DeletionRequestForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                deletion = guest_deletion_request(
                    identifiers=[(form.cleaned_data["provider"], form.cleaned_data["identifier"])],
                    gdpr=form.cleaned_data["gdpr"],
                    user=request.user,
                )
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(
                    request,
                    f"Deletion request {deletion.pk} staged and the identity suppressed: nothing "
                    "of this person is sent to CDP from now on. Create a batch of guest "
                    "deletions to send it; someone else approves it.",
                    messages.SUCCESS,
                )
                return redirect(reverse("admin:records_guestdeletion_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Request a guest's deletion",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/records/guestdeletion/add.html", context)


@admin.register(SuppressedIdentity)
class SuppressedIdentityAdmin(ReadOnlyAdmin):
    list_display = ("identity_hash", "deletion", "created_at")
    fields = list_display
    readonly_fields = list_display
    search_fields = ("=identity_hash",)
    search_help_text = "The sha256 of provider:id (see docs/erasure.md)."
