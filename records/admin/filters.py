"""The list filters of the review screens, each backed by an index or a cached scan."""

from django.contrib import admin
from django.core.cache import cache
from django.db import connection

from records.models import ReviewStatus
from records.rules import problem_label
from records.selectors import (
    guest_countries,
    guests_with_identity,
    import_runs_for_schema,
    in_live_batch,
)

# The distinct codes cost one pass over the invalid rows (measured 280-370 ms with 20,000
# invalid among 1M guests), so they are computed at most once per process every few minutes.
ERROR_CODES_CACHE_SECONDS = 300


def _error_codes(model: type) -> list[str]:
    # Only invalid records carry problems, so the review_status index narrows the scan.
    key = f"records-review-error-codes-{model._meta.model_name}"
    codes = cache.get(key)
    if codes is None:
        table = model._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT DISTINCT e->>'code' FROM {table}, "  # noqa: S608 - model table name
                "jsonb_array_elements(validation_errors) AS e "
                "WHERE review_status = %s ORDER BY 1",
                [ReviewStatus.INVALID],
            )
            codes = [row[0] for row in cursor.fetchall() if row[0]]
        cache.set(key, codes, ERROR_CODES_CACHE_SECONDS)
    return codes


class ErrorCodeFilter(admin.SimpleListFilter):
    """Records with a validation problem of this code (GIN index on validation_errors)."""

    title = "error code"
    parameter_name = "error_code"

    def lookups(self, request, model_admin):
        codes = _error_codes(model_admin.model)
        if self.value() and self.value() not in codes:
            codes = [*codes, self.value()]
        return [(code, problem_label(code)) for code in codes]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(validation_errors__contains=[{"code": self.value()}])
        return queryset


class ImportRunFilter(admin.SimpleListFilter):
    """Records staged (or last updated) by one import run; lists the latest runs."""

    title = "import run"
    parameter_name = "import_run"
    schema = "guest"

    def lookups(self, request, model_admin):
        runs = list(import_runs_for_schema(schema=self.schema))
        choices = [(str(run.pk), f"#{run.pk} {run.original_name}") for run in runs]
        if self.value() and self.value() not in {value for value, _ in choices}:
            choices.append((self.value(), f"#{self.value()}"))
        return choices

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(import_run_id=int(value))
        return queryset


class TrackingImportRunFilter(ImportRunFilter):
    schema = "tracking"


class CountryFilter(admin.SimpleListFilter):
    """Guests of one country; the choices come from a loose index scan, not SELECT DISTINCT."""

    title = "country"
    parameter_name = "country"

    def lookups(self, request, model_admin):
        return [(code, code) for code in guest_countries()]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(country=self.value())
        return queryset


class YesNoFilter(admin.SimpleListFilter):
    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() in {"yes", "no"}:
            return self.apply(queryset, present=self.value() == "yes")
        return queryset

    def apply(self, queryset, *, present: bool):
        raise NotImplementedError


class HasIdentifierFilter(YesNoFilter):
    """Guests with an identifier of a configured provider (an identity key), or without."""

    title = "has identifier"
    parameter_name = "has_identifier"

    def apply(self, queryset, *, present: bool):
        return guests_with_identity(queryset, present=present)


class LockedFilter(YesNoFilter):
    title = "in a live batch"
    parameter_name = "locked"

    def apply(self, queryset, *, present: bool):
        return in_live_batch(queryset, present=present)


class PurgedFilter(YesNoFilter):
    title = "personal data purged"
    parameter_name = "purged"

    def apply(self, queryset, *, present: bool):
        return queryset.filter(purged_at__isnull=not present)
