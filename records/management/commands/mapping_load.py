"""`manage.py mapping_load FILE [--name NAME]`: save a mapping document under its name."""

import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from cdpstage.errors import ApplicationError
from records.services.mappings import mapping_document_parse, mapping_save


class Command(BaseCommand):
    help = "Save a mapping document (JSON, docs/mapping.md); a changed one gets a new version."

    def add_arguments(self, parser):
        parser.add_argument("file", help="The mapping document (.json).")
        parser.add_argument("--name", help="Save under this name (default: the document's).")
        parser.add_argument("--user", help="Username recorded as the mapping's editor.")

    def handle(self, *args, **options):
        path = Path(options["file"])
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandError(f"{path} is not a readable JSON file: {exc}") from None
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"No user named {options['user']!r}.")
        try:
            document = mapping_document_parse(data)
            mapping = mapping_save(name=options["name"] or "", document=document, user=user)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Saved mapping {mapping.name!r} version {mapping.version}.")
