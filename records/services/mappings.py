"""Saved column mappings: save (a new version when the document changes), find, load."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from cdpstage.errors import ApplicationError
from records.mapping.documents import (
    MappingDocument,
    MappingDocumentError,
    parse_document,
    to_json,
)
from records.models import Mapping

logger = logging.getLogger(__name__)

__all__ = ["mapping_document_parse", "mapping_save"]


def mapping_document_parse(data: Any, *, schema: str | None = None) -> MappingDocument:
    """A checked document, or ApplicationError naming every problem."""
    try:
        return parse_document(data, schema=schema)
    except MappingDocumentError as exc:
        raise ApplicationError("The mapping cannot be used: " + exc.message) from None


@transaction.atomic
def mapping_save(*, name: str, document: MappingDocument, user: Any = None) -> Mapping:
    """Save a mapping under a name: a new one, or a new version of the one of that name (the
    same document again changes nothing). A name belongs to one schema."""
    name = (name or document.name or "").strip()
    if not name or len(name) > 100:
        raise ApplicationError("Give the mapping a name of 1–100 characters.")
    data = to_json(document)
    data["name"] = name
    user = user if getattr(user, "pk", None) else None
    mapping = Mapping.objects.select_for_update().filter(name=name).first()
    if mapping is None:
        mapping = Mapping.objects.create(
            name=name,
            schema=document.schema,
            header_fingerprint=document.fingerprint,
            document=data,
            created_by=user,
            updated_by=user,
        )
        logger.info("Mapping %s created (%s)", mapping.pk, document.schema)
        return mapping
    if mapping.schema != document.schema:
        raise ApplicationError(
            f"The mapping {name!r} is for {mapping.schema} files; choose another name."
        )
    if mapping.document == data:
        return mapping
    mapping.document = data
    mapping.header_fingerprint = document.fingerprint
    mapping.version += 1
    mapping.updated_by = user
    mapping.save(update_fields=["document", "header_fingerprint", "version", "updated_by",
                                "updated_at"])  # fmt: skip
    logger.info("Mapping %s saved as version %s", mapping.pk, mapping.version)
    return mapping
