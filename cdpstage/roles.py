"""The roles of DESIGN.md section 1 as permission sets, synced by a migration."""

from collections.abc import Iterable

from django.contrib.auth.management import create_permissions

RECORD_MODELS = (
    "guest", "identifier", "subscription", "extension", "trackingevent", "order", "orderitem",
    "guestmigration",
)  # fmt: skip
BATCH_MODELS = ("batch", "batchfile", "batchitem", "batchevent")
# Erasure requests and the suppression list (records.services.erasure): everyone may see them.
ERASURE_VIEW = ("records.view_guestdeletion", "records.view_suppressedidentity")


def _perms(app: str, actions: Iterable[str], models: Iterable[str]) -> list[str]:
    return [f"{app}.{action}_{model}" for model in models for action in actions]


ROLES: dict[str, list[str]] = {
    # Uploads files, fixes invalid rows, re-imports, creates batches (never approves them).
    # Sees personal data: they hold the source files anyway, and fixing an invalid email needs it.
    "Stager": [
        *_perms("records", ("add", "change", "view"), RECORD_MODELS),
        "records.view_pii",
        "records.add_importrun",
        "records.view_importrun",
        # Maps new source layouts and saves the mappings; names a new source system's
        # identity provider (without changing the deployment).
        *_perms("records", ("add", "change", "view"), ("mapping", "identityprovider")),
        "batches.add_batch",
        *_perms("batches", ("view",), BATCH_MODELS),
        # Takes a person's erasure request; its batch is approved by someone else.
        "records.add_guestdeletion",
        *ERASURE_VIEW,
    ],
    # Filters and inspects staged records, marks them ready or holds them back.
    "Reviewer": [
        *_perms(
            "records",
            ("change", "view", "review"),
            ("guest", "trackingevent", "order", "guestmigration"),
        ),
        *_perms("records", ("view",), RECORD_MODELS),
        "records.view_importrun",
        *_perms("batches", ("view",), BATCH_MODELS),
        *ERASURE_VIEW,
    ],
    # Inspects built batches and approves them (the service refuses their own).
    "Approver": [
        *_perms("records", ("view",), RECORD_MODELS),
        "records.view_importrun",
        *_perms("batches", ("view",), BATCH_MODELS),
        "batches.approve_batch",
        "batches.change_batch",
        *ERASURE_VIEW,
    ],
    # Runs the job queues: the job dashboard (requeue, stop, empty a queue) and nothing else.
    # Why a role of its own: the dashboard acts on Redis, which every other role only reads
    # through the app's own pages.
    "Operator": [
        "django_rq.admin",
        "records.view_importrun",
        *_perms("batches", ("view",), ("batch", "batchfile", "batchevent")),
    ],
    # Answers "what did we send about guest X" and changes nothing.
    "Auditor": [
        *_perms("records", ("view",), RECORD_MODELS),
        "records.view_importrun",
        *_perms("batches", ("view",), BATCH_MODELS),
        *ERASURE_VIEW,
    ],
}


def _model_of(perm: str) -> tuple[str, str] | None:
    """(app label, model name) an add/change/view/delete/review permission belongs to."""
    app_label, _, codename = perm.partition(".")
    action, _, model = codename.partition("_")
    if action in ("add", "change", "view", "delete", "review") and model:
        return (app_label, model)
    return None


def sync_roles(apps, *, complete: bool = False) -> None:
    """Create or update the role groups from ROLES (used by data migrations; idempotent).

    `apps` is the migration state registry, so this works whatever the current models are.
    An older sync migration runs before the migrations that add some of today's permissions:
    it grants those that exist then. A sync migration passing `complete=True` refuses a
    permission that still does not exist (a typo in ROLES) of a model that exists by then; a
    model a later migration adds is granted by that migration's own sync.
    """
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    existing = {
        f"{app_label}.{codename}": pk
        for pk, app_label, codename in permission_model.objects.values_list(
            "pk", "content_type__app_label", "codename"
        )
    }
    models = {
        (model._meta.app_label, model._meta.model_name)
        for app_config in apps.get_app_configs()
        for model in app_config.get_models()
    }
    for name, perms in ROLES.items():
        missing = [
            perm for perm in perms if perm not in existing and _model_of(perm) in models | {None}
        ]
        if complete and missing:
            raise LookupError(f"Role {name}: no such permission {', '.join(missing)}")
        group, _ = group_model.objects.get_or_create(name=name)
        group.permissions.set([existing[perm] for perm in perms if perm in existing])
