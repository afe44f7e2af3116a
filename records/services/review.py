"""Review services: mark ready, hold, back to new, edit and re-validate, delete staged records.

Status changes are conditional bulk UPDATEs over REVIEW_TRANSITIONS: a record moves only from
an allowed source status and only while no live batch holds it, so an invalid or locked record
is skipped (and counted), never changed. Edits re-validate through the import services' refresh,
the one place that turns typed columns and children into the canonical CDP value.
"""

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from cdpstage.errors import ApplicationError
from records.masking import PERSONAL_FIELD_NAMES, can_view_pii
from records.models import (
    REVIEW_TRANSITIONS,
    DeliveryStatus,
    Guest,
    Order,
    ReviewStatus,
    TrackingEvent,
)
from records.selectors import held_by_live_batch, in_live_batch, live_batch_of, live_batches_settle
from records.serializing import GUEST_COLUMNS, TRACKING_COLUMNS
from records.services.values import (
    guests_refresh_values,
    orders_refresh_values,
    tracking_refresh_values,
)

logger = logging.getLogger(__name__)

__all__ = [
    "GUEST_EDITABLE_FIELDS",
    "ORDER_EDITABLE_FIELDS",
    "TRACKING_EDITABLE_FIELDS",
    "DeleteResult",
    "ReviewResult",
    "guest_update",
    "order_update",
    "records_delete",
    "records_hold",
    "records_mark_new",
    "records_mark_ready",
    "review_sources",
    "tracking_event_update",
]

StagedModel = type[Guest] | type[TrackingEvent] | type[Order]

# The typed CDP columns a person may edit; lifecycle fields (ref, statuses, hashes, lock,
# source, identity key, the stored CDP value) are only ever written by services.
# A guest's mode (insert or upsert) is the steward's choice too.
GUEST_EDITABLE_FIELDS = frozenset(("mode", *(column for column, _ in GUEST_COLUMNS.values())))
TRACKING_EDITABLE_FIELDS = frozenset(column for column, _ in TRACKING_COLUMNS.values())

# An order's own fields; its items are edited through the admin's inline (save_items).
ORDER_EDITABLE_FIELDS = frozenset(
    {
        "reference_id",
        "channel",
        "point_of_sale",
        "status",
        "ordered_at",
        "currency_code",
        "price",
        "payment_type",
        "card_type",
        "contact",
        "consumers",
        "extensions",
    }
)


@dataclass(frozen=True, slots=True)
class ReviewResult:
    """What a review action did to a selection, for the admin message and the command."""

    target: str
    selected: int
    changed: int
    skipped_invalid: int
    skipped_locked: int
    unchanged: int

    @property
    def skipped(self) -> int:
        return self.selected - self.changed

    def __add__(self, other: "ReviewResult") -> "ReviewResult":
        """Two results of the same action (chunks of one selection) as one."""
        if other.target != self.target:
            raise ValueError("Only results of the same action add up.")
        return ReviewResult(
            target=self.target,
            selected=self.selected + other.selected,
            changed=self.changed + other.changed,
            skipped_invalid=self.skipped_invalid + other.skipped_invalid,
            skipped_locked=self.skipped_locked + other.skipped_locked,
            unchanged=self.unchanged + other.unchanged,
        )

    def message(self, *, singular: str, plural: str) -> str:
        """One sentence: how many changed, and why the rest did not."""
        label = ReviewStatus(self.target).label.lower()
        noun = singular if self.changed == 1 else plural
        parts = [f"{self.changed} {noun} marked {label}."]
        if self.skipped_invalid:
            parts.append(
                f"{self.skipped_invalid} skipped because they are invalid (fix them first)."
            )
        if self.skipped_locked:
            parts.append(
                f"{self.skipped_locked} skipped because they are in a batch that has not finished."
            )
        if self.unchanged:
            parts.append(f"{self.unchanged} were already {label}.")
        other = self.skipped - self.skipped_invalid - self.skipped_locked - self.unchanged
        if other > 0:
            parts.append(f"{other} changed status meanwhile and were left alone.")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """How many records a delete removed and how many it refused (locked or delivered)."""

    deleted: int
    skipped: int


def review_sources(target: str) -> frozenset[str]:
    """The review statuses a reviewer may move a record from into `target`."""
    return frozenset(source for source, targets in REVIEW_TRANSITIONS.items() if target in targets)


def _permission(model: StagedModel, action: str) -> str:
    return f"{model._meta.app_label}.{action}_{model._meta.model_name}"


def _require(user: Any, model: StagedModel, action: str) -> None:
    if user is None or not user.has_perm(_permission(model, action)):
        raise ApplicationError(
            f"You do not have permission to {action} {model._meta.verbose_name_plural}."
        )


def _selection(
    model: StagedModel, ids: Iterable[int] | None, queryset: QuerySet | None
) -> QuerySet:
    if (ids is None) == (queryset is None):
        raise ValueError("Pass exactly one of ids or queryset.")
    if queryset is not None:
        if queryset.model is not model:
            raise ValueError("The queryset is not over the given model.")
        # Re-select by primary key: the caller's queryset may carry ordering, joins or
        # DISTINCT from a change list, none of which an UPDATE can take.
        return model.objects.filter(pk__in=queryset.order_by().values("pk"))
    return model.objects.filter(pk__in=list(ids))


@transaction.atomic
def _review_transition(
    *,
    model: StagedModel,
    target: str,
    ids: Iterable[int] | None,
    queryset: QuerySet | None,
    user: Any,
) -> ReviewResult:
    # Its own permission, not "change": a Stager who edits records must not pass them too.
    _require(user, model, "review")
    sources = review_sources(target)
    live_batches_settle(model=model)
    selection = _selection(model, ids, queryset)
    held = held_by_live_batch(model)
    counts = selection.aggregate(
        selected=Count("pk"),
        invalid=Count("pk", filter=Q(review_status=ReviewStatus.INVALID)),
        locked=Count("pk", filter=Q(held, review_status__in=sources)),
        unchanged=Count("pk", filter=Q(review_status=target)),
    )
    changed = in_live_batch(selection.filter(review_status__in=sources), present=False).update(
        review_status=target, updated_at=timezone.now()
    )
    result = ReviewResult(
        target=target,
        selected=counts["selected"],
        changed=changed,
        skipped_invalid=counts["invalid"],
        skipped_locked=counts["locked"],
        unchanged=counts["unchanged"],
    )
    logger.info(
        "review: user %s moved %d of %d %s records to %s",
        user.pk,
        changed,
        result.selected,
        model._meta.model_name,
        target,
    )
    return result


def records_mark_ready(
    *,
    model: StagedModel,
    ids: Iterable[int] | None = None,
    queryset: QuerySet | None = None,
    user: Any,
) -> ReviewResult:
    """Mark new or held records ready; invalid and locked ones are skipped and counted."""
    return _review_transition(
        model=model, target=ReviewStatus.READY, ids=ids, queryset=queryset, user=user
    )


def records_hold(
    *,
    model: StagedModel,
    ids: Iterable[int] | None = None,
    queryset: QuerySet | None = None,
    user: Any,
) -> ReviewResult:
    """Hold new or ready records back from batches; invalid and locked ones are skipped."""
    return _review_transition(
        model=model, target=ReviewStatus.HELD, ids=ids, queryset=queryset, user=user
    )


def records_mark_new(
    *,
    model: StagedModel,
    ids: Iterable[int] | None = None,
    queryset: QuerySet | None = None,
    user: Any,
) -> ReviewResult:
    """Put ready or held records back to new (unreviewed); invalid and locked ones are skipped."""
    return _review_transition(
        model=model, target=ReviewStatus.NEW, ids=ids, queryset=queryset, user=user
    )


def _check_edit(
    *,
    model: StagedModel,
    schema: str,
    record: Guest | TrackingEvent,
    fields: Mapping[str, Any],
    editable: frozenset[str],
    user: Any,
) -> None:
    _require(user, model, "change" if record.pk else "add")
    not_editable = sorted(set(fields) - editable)
    if not_editable:
        raise ApplicationError(f"These fields cannot be edited: {', '.join(not_editable)}.")
    if set(fields) & PERSONAL_FIELD_NAMES[schema] and not can_view_pii(user):
        raise ApplicationError(
            "Only users allowed to see personal data can change personal fields."
        )
    if record.pk is None:
        return
    # A build's selection waits for this transaction (and this edit for a running selection),
    # so an edit and a build never interleave on the same record.
    live_batches_settle(model=model)
    if not model.objects.select_for_update().filter(pk=record.pk).exists():
        raise ApplicationError(f"This {model._meta.verbose_name} no longer exists.")
    batch_id = live_batch_of(model=model, record_id=record.pk)
    if batch_id is not None:
        raise ApplicationError(
            f"This {model._meta.verbose_name} is in batch {batch_id}, "
            "which has not finished; edit it after the batch ends."
        )


def _apply(record: Guest | TrackingEvent, fields: Mapping[str, Any]) -> None:
    for name, value in fields.items():
        setattr(record, name, value)
    if record.pk is None:
        record.save()
    else:
        record.save(update_fields=[*fields, "updated_at"])


@transaction.atomic
def guest_update(
    *,
    guest: Guest,
    fields: Mapping[str, Any],
    user: Any,
    save_children: Callable[[], None] | None = None,
) -> Guest:
    """Change a guest's typed fields (and, through `save_children`, its children), then re-validate.

    Refuses a guest held by a live batch, personal fields without view_pii, and lifecycle
    fields. `save_children` runs inside the same transaction after the guest is saved (the
    admin passes its inline formsets' save); the refresh then recomputes the CDP value, hash,
    validation errors and review status from what is stored. A new guest (no pk) is created.
    """
    _check_edit(
        model=Guest,
        schema="guest",
        record=guest,
        fields=fields,
        editable=GUEST_EDITABLE_FIELDS,
        user=user,
    )
    _apply(guest, fields)
    if save_children is not None:
        save_children()
    guests_refresh_values(guest_ids=[guest.pk])
    guest.refresh_from_db()
    logger.info("review: user %s edited guest %s", user.pk, guest.pk)
    return guest


@transaction.atomic
def tracking_event_update(
    *,
    event: TrackingEvent,
    fields: Mapping[str, Any],
    user: Any,
) -> TrackingEvent:
    """Change a tracking event's fields and re-validate it; refuses locked events."""
    _check_edit(
        model=TrackingEvent,
        schema="tracking",
        record=event,
        fields=fields,
        editable=TRACKING_EDITABLE_FIELDS,
        user=user,
    )
    _apply(event, fields)
    tracking_refresh_values(event_ids=[event.pk])
    event.refresh_from_db()
    logger.info("review: user %s edited tracking event %s", user.pk, event.pk)
    return event


@transaction.atomic
def order_update(
    *,
    order: Order,
    fields: Mapping[str, Any],
    user: Any,
    save_items: Callable[[], None] | None = None,
) -> Order:
    """Change an order's fields (and, through `save_items`, its items), then re-validate it.

    The same refusals as guest_update (locked, personal fields without view_pii, lifecycle
    fields); a delivered order that changes becomes invalid (records.rules
    order_redelivery_problems): CDP would insert it a second time.
    """
    _check_edit(
        model=Order,
        schema="order",
        record=order,
        fields=fields,
        editable=ORDER_EDITABLE_FIELDS,
        user=user,
    )
    _apply(order, fields)
    if save_items is not None:
        save_items()
    orders_refresh_values(order_ids=[order.pk])
    order.refresh_from_db()
    logger.info("review: user %s edited order %s", user.pk, order.pk)
    return order


def deletable(queryset: QuerySet) -> QuerySet:
    """Only records no live batch holds and that were never delivered may be deleted."""
    return (
        in_live_batch(queryset, present=False)
        .filter(delivered_hash="")
        .exclude(delivery_status=DeliveryStatus.DELIVERED)
    )


@transaction.atomic
def records_delete(
    *,
    model: StagedModel,
    ids: Iterable[int] | None = None,
    queryset: QuerySet | None = None,
    user: Any,
) -> DeleteResult:
    """Delete staged records, except locked or delivered ones (the audit trail needs those)."""
    _require(user, model, "delete")
    selection = _selection(model, ids, queryset)
    selected = selection.count()
    # Lock the rows first so a batch cannot take one between the check and the delete.
    pks = list(deletable(selection).select_for_update().values_list("pk", flat=True))
    model.objects.filter(pk__in=pks).delete()
    logger.info("review: user %s deleted %d %s records", user.pk, len(pks), model._meta.model_name)
    return DeleteResult(deleted=len(pks), skipped=selected - len(pks))
