"""The staging engine (see base.py): one stager per schema, chosen by stager_for()."""

from typing import Any

from records.importing.staging.base import (
    Counts,
    Stager,
    WriteResult,
    locked_message,
)
from records.importing.staging.children import (
    ChildStager,
    ExtensionStager,
    SubscriptionStager,
)
from records.importing.staging.guests import GuestStager
from records.importing.staging.migrations import MigrationStager
from records.importing.staging.orders import OrderStager
from records.importing.staging.tracking import TrackingStager

STAGERS: dict[str, type[Stager]] = {
    "guest": GuestStager,
    "tracking": TrackingStager,
    "order": OrderStager,
    "subscription": SubscriptionStager,
    "extension": ExtensionStager,
    "migration": MigrationStager,
}


def stager_for(schema: str, **kwargs: Any) -> Stager:
    return STAGERS[schema](**kwargs)


__all__ = [
    "STAGERS",
    "ChildStager",
    "Counts",
    "ExtensionStager",
    "GuestStager",
    "MigrationStager",
    "OrderStager",
    "Stager",
    "SubscriptionStager",
    "TrackingStager",
    "WriteResult",
    "locked_message",
    "stager_for",
]
