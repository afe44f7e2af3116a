"""`manage.py demo_setup`: demo users (one per role) and a few thousand synthetic guests.

DEMO ONLY: it creates users with printed random passwords. Idempotent: existing users keep
their passwords (unless --reset-passwords), the demo file is rewritten only if it differs from
the generator's output, and the guests are imported only when no guest is staged yet.
"""

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from cdpstage.roles import ROLES
from records.demo import DEMO_GUESTS, write_demo_csv, write_demo_topup_csv
from records.models import Guest, ImportRun, Schema
from records.services.imports import import_run_create, import_run_execute

# (username, group); `admin` is a superuser in no group.
DEMO_USERS: tuple[tuple[str, str | None], ...] = (
    ("admin", None),
    ("stager", "Stager"),
    ("reviewer", "Reviewer"),
    ("approver", "Approver"),
    ("approver2", "Approver"),
    ("operator", "Operator"),
    ("auditor", "Auditor"),
)


def demo_email(username: str) -> str:
    """A demo user's address, at a reserved example domain (RFC 2606)."""
    return f"{username}@example.com"


def demo_file_path() -> Path:
    return Path(settings.BASE_DIR) / "demo" / "guests-demo.csv"


def demo_topup_path() -> Path:
    return Path(settings.BASE_DIR) / "demo" / "guests-topup.csv"


class Command(BaseCommand):
    help = (
        "DEMO ONLY. Create the demo users (admin, stager, reviewer, approver, approver2, "
        "auditor) with random passwords printed once, write demo/guests-demo.csv and import it."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--reset-passwords",
            action="store_true",
            help="Give the existing demo users new random passwords (printed).",
        )
        parser.add_argument(
            "--no-import", action="store_true", help="Create the users and the file only."
        )

    def handle(self, *args, **options):
        missing_perms = self._ensure_groups()
        for perm in missing_perms:
            self.stderr.write(f"Permission {perm} does not exist yet; its group lacks it.")
        users = self._ensure_users(reset=options["reset_passwords"])

        path, topup = demo_file_path(), demo_topup_path()
        if write_demo_csv(path):
            self.stdout.write(f"Wrote {DEMO_GUESTS} synthetic guests to {path}.")
        if write_demo_topup_csv(topup):
            self.stdout.write(f"Wrote the top-up extract (walkthrough step 1) to {topup}.")
        if options["no_import"]:
            pass
        elif Guest.objects.exists():
            self.stdout.write("Guests are already staged; the demo file was not imported again.")
        else:
            self._import(path)
        # Last, so the passwords are what a reader sees at the end of the output.
        self._print_users(users)

    # ---- roles and users ----------------------------------------------------------------

    @transaction.atomic
    def _ensure_groups(self) -> list[str]:
        """Create any role group the roles migration has not created yet, from ROLES."""
        missing: list[str] = []
        for name, perms in ROLES.items():
            if Group.objects.filter(name=name).exists():
                continue
            group = Group.objects.create(name=name)
            for perm in perms:
                app_label, codename = perm.split(".")
                found = Permission.objects.filter(
                    content_type__app_label=app_label, codename=codename
                ).first()
                if found is None:
                    missing.append(perm)
                else:
                    group.permissions.add(found)
            self.stdout.write(f"Created group {name}.")
        return missing

    @transaction.atomic
    def _ensure_users(self, *, reset: bool) -> list[tuple[str, str | None]]:
        """Create the missing demo users; (username, new password or None if unchanged)."""
        user_model = get_user_model()
        users: list[tuple[str, str | None]] = []
        for username, group in DEMO_USERS:
            user = user_model.objects.filter(username=username).first()
            created = user is None
            if created:
                user = user_model(username=username, is_staff=True)
                user.is_superuser = group is None
            password = None
            if created or reset:
                password = secrets.token_urlsafe(12)
                user.set_password(password)
            # An address, so the end-of-batch e-mail (console backend here) has someone to go to.
            if not user.email:
                user.email = demo_email(username)
            user.save()
            if group is not None:
                user.groups.add(Group.objects.get(name=group))
            users.append((username, password))
        return users

    def _print_users(self, users: list[tuple[str, str | None]]) -> None:
        emails = dict(get_user_model().objects.values_list("username", "email"))
        self.stdout.write("")
        if not all(password for _, password in users):
            self.stdout.write(
                "Passwords shown as (unchanged) were printed when the users were created; "
                "`manage.py demo_setup --reset-passwords` gives new ones."
            )
        self.stdout.write("Demo users (DEMO ONLY - never use these on a real system):")
        for username, password in users:
            role = dict(DEMO_USERS)[username] or "superuser"
            shown = password or "(unchanged)"
            self.stdout.write(f"  {username:<10} {shown:<17} {role:<10} {emails[username]}")

    # ---- the demo guests ------------------------------------------------------------------

    def _import(self, path: Path) -> None:
        # The same two services the stage_import command uses, in the foreground.
        admin = get_user_model().objects.get(username="admin")
        with path.open("rb") as handle:
            run = import_run_create(
                uploaded_file=File(handle, name=path.name),
                schema=Schema.GUEST,
                on_error=ImportRun.OnError.SKIP,
                user=admin,
                enqueue=False,
            )
        self.stdout.write(f"Importing {path.name} as import run {run.pk} ...")
        finished = import_run_execute(import_run_id=run.pk, attempt=run.attempt)
        if finished is None:
            raise CommandError(f"Import run {run.pk} was taken over by another process.")
        self.stdout.write(
            f"Import run {run.pk}: {finished.get_status_display()}. "
            f"{finished.rows_created} guests staged, {finished.rows_invalid} of them invalid "
            "(on purpose, to review), "
            f"{finished.rows_bad} rows could not be staged."
        )
        if finished.status == ImportRun.Status.FAILED:
            raise CommandError(finished.message or f"Import run {run.pk} failed.")
