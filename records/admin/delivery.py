"""What the batches app tells the record pages about delivery: a record's delivery history
and CDP's answers (records may not import batches, so batches.admin registers both here).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import admin

from records.models import DeliveryStatus

DeliveryHistoryRenderer = Callable[[Any], str]


_delivery_history_renderers: dict[type, DeliveryHistoryRenderer] = {}


def register_delivery_history(model: type, renderer: DeliveryHistoryRenderer) -> None:
    """Show `renderer(record)` (safe HTML, no personal data) as the record's delivery history."""
    _delivery_history_renderers[model] = renderer


def render_delivery_history(record: Any) -> str:
    renderer = _delivery_history_renderers.get(type(record))
    if renderer is None or record.pk is None:
        return "No deliveries yet."
    return renderer(record)


@dataclass(frozen=True)
class CdpOutcomes:
    """How the record lists read CDP's answers (supplied by batches.admin)."""

    # (key, title) of each kind of answer CDP gives for a rejected record.
    groups: Callable[[], list[tuple[str, str]]]
    # The refs of the records whose rejection is of this kind (a subquery).
    refs_in_group: Callable[[str], Any]
    # An expression: CDP's latest rejection of the record at OuterRef("ref"), or NULL.
    latest_rejection: Callable[[], Any]


_cdp_outcomes: list[CdpOutcomes] = []


def register_cdp_outcomes(outcomes: CdpOutcomes) -> None:
    """Give the record lists their CDP-outcome filter and the answer in the delivery column."""
    _cdp_outcomes[:] = [outcomes]


def registered_cdp_outcomes() -> CdpOutcomes | None:
    """What batches.admin registered, or None (records' own tests run without it)."""
    return _cdp_outcomes[0] if _cdp_outcomes else None


class CdpOutcomeFilter(admin.SimpleListFilter):
    """Records CDP rejected, by what its answer means (batches.cdpcodes' groups)."""

    title = "CDP rejected it for"
    parameter_name = "cdp_rejected"

    def lookups(self, request, model_admin):
        outcomes = registered_cdp_outcomes()
        return outcomes.groups() if outcomes else []

    def queryset(self, request, queryset):
        outcomes = registered_cdp_outcomes()
        if self.value() and outcomes:
            refs = outcomes.refs_in_group(self.value())
            return queryset.filter(delivery_status=DeliveryStatus.REJECTED, ref__in=refs)
        return queryset
