"""Admin for staged guest migrations: review (list, filters, mark ready / hold), no editing.

A migration is fixed in its source file and re-imported (it is matched on its two identities),
so its page is read-only; personal data (the identifiers) is masked without view_pii.
"""

import json

from django.contrib import admin
from django.db.models import Q

from records import masking
from records.admin.delivery import CdpOutcomeFilter
from records.admin.filters import ErrorCodeFilter, ImportRunFilter, LockedFilter
from records.admin.review import StagedRecordAdmin, masked_display
from records.models import GuestMigration
from records.selectors import identity_provider_names


class MigrationImportRunFilter(ImportRunFilter):
    schema = "migration"


def _masked_identifiers(items) -> str:
    return json.dumps(
        [masking.mask_identifier(item) for item in items or [] if isinstance(item, dict)]
    )


@admin.register(GuestMigration)
class GuestMigrationAdmin(StagedRecordAdmin):
    schema = "migration"
    list_display = (
        "id",
        "from_identity_key",
        "to_identity_key",
        "review_status",
        "error_count",
        "delivery_display",
        "import_run_display",
    )
    list_display_links = ("id",)
    list_filter = (
        "review_status",
        "delivery_status",
        CdpOutcomeFilter,
        ErrorCodeFilter,
        MigrationImportRunFilter,
        LockedFilter,
    )
    search_help_text = "Exact identity of either guest (provider:id or id), ref or database id."
    search_fields = ("from_identity_key",)  # shows the search box; matching is search_q's

    masked_from_identity_key = masked_display("from_identity_key", "from guest")
    masked_to_identity_key = masked_display("to_identity_key", "to guest")

    @admin.display(description="migrate from (identifiers)")
    def masked_migrate_from(self, obj):
        return _masked_identifiers(obj.migrate_from)

    @admin.display(description="migrate to (identifiers)")
    def masked_migrate_to(self, obj):
        return _masked_identifiers(obj.migrate_to)

    def has_add_permission(self, request):
        return False  # staged by importing a migration file

    def has_change_permission(self, request, obj=None):
        # The list's review actions need the change list; a migration's page stays read-only.
        return obj is None and super().has_change_permission(request, obj)

    def get_readonly_fields(self, request, obj=None):
        fields = [*super().get_readonly_fields(request, obj), "from_identity_key"]
        fields += ["to_identity_key", "migrate_from", "migrate_to"]
        return fields

    def base_fieldsets(self, obj):
        return [
            (
                None,
                {
                    "fields": (
                        "ref",
                        "from_identity_key",
                        "to_identity_key",
                        "review_status",
                        "validation_errors_display",
                        "delivery_status",
                        "delivered_at",
                        "locked_display",
                    )
                },
            ),
            ("Delivery history", {"fields": ("delivery_history",)}),
            ("Migration", {"fields": ("migrate_from", "migrate_to")}),
            (
                "CDP value",
                {"fields": ("cdp_value_display", "value_hash", "delivered_hash", "mode")},
            ),
            (
                "Source",
                {"fields": ("import_run_display", "source_row", "created_at", "updated_at")},
            ),
        ]

    def search_q(self, term: str) -> Q:
        query = super().search_q(term)
        keys = [term] + [f"{p}:{term}" for p in identity_provider_names()]
        return query | Q(from_identity_key__in=keys) | Q(to_identity_key__in=keys)
