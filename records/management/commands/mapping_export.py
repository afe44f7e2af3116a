"""`manage.py mapping_export NAME`: print a saved mapping as its JSON document."""

import json

from django.core.management.base import BaseCommand, CommandError

from records.models import Mapping


class Command(BaseCommand):
    help = "Print a saved column mapping as a JSON document (docs/mapping.md)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="The mapping's name.")

    def handle(self, *args, **options):
        mapping = Mapping.objects.filter(name=options["name"]).first()
        if mapping is None:
            names = ", ".join(Mapping.objects.values_list("name", flat=True)[:20]) or "none yet"
            raise CommandError(f"No mapping named {options['name']!r} (saved: {names}).")
        self.stdout.write(json.dumps(mapping.document, indent=2, ensure_ascii=False))
