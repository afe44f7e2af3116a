"""Identity providers: the providers whose identifiers identify a guest, managed as data."""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.db import transaction

from cdpstage.errors import ApplicationError
from records.models import Identifier, IdentityProvider

logger = logging.getLogger(__name__)

# A provider is written into every identifier CDP receives; CDP's examples use names such as
# `email`, `CRM_ID`, `LOYALTY-NO`. Spaces and punctuation beyond - _ . would not survive the
# `<provider>:<id>` identity key and are never what a source system means.
_PROVIDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")

__all__ = ["identity_provider_add", "identity_provider_remove", "identity_providers_seed"]


def identity_providers_seed(model: type[IdentityProvider] = IdentityProvider) -> int:
    """Give an empty provider table the deployment's CDP_IDENTITY_PROVIDERS, in their order
    (the first migrate does this once; `model` is the migration's historical model there)."""
    if model.objects.exists():
        return 0
    for position, name in enumerate(settings.CDP_IDENTITY_PROVIDERS):
        model.objects.create(name=name, priority=(position + 1) * 10)
    return len(settings.CDP_IDENTITY_PROVIDERS)


@transaction.atomic
def identity_provider_add(*, name: str, priority: int | None = None) -> IdentityProvider:
    """Add a provider (or change its priority); without a priority it goes after the others."""
    name = (name or "").strip()
    if not _PROVIDER_NAME.fullmatch(name):
        raise ApplicationError(
            "A provider name is 1–100 letters, digits, '-', '_' or '.', starting with a letter "
            "or digit, written exactly as in the identifiers (e.g. email, CRM_ID)."
        )
    if priority is not None and priority < 0:
        raise ApplicationError("The priority must be 0 or more (lower numbers come first).")
    if priority is None:
        last = IdentityProvider.objects.order_by("-priority").values_list("priority", flat=True)
        priority = (last.first() or 0) + 10
    provider, created = IdentityProvider.objects.update_or_create(
        name=name, defaults={"priority": priority}
    )
    logger.info(
        "Identity provider %s %s (priority %s)", name, "added" if created else "kept", priority
    )
    return provider


@transaction.atomic
def identity_provider_remove(*, name: str) -> None:
    """Remove a provider no staged identifier uses (guests would lose their identity)."""
    provider = IdentityProvider.objects.filter(name=name).first()
    if provider is None:
        raise ApplicationError(f"There is no identity provider named {name!r}.")
    in_use = Identifier.objects.filter(provider=name).count()
    if in_use:
        raise ApplicationError(
            f"{in_use:,} staged identifiers use the provider {name!r}; fix or delete those "
            "guests first, or keep the provider."
        )
    provider.delete()
    logger.info("Identity provider %s removed", name)
