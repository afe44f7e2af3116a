"""Background jobs for import runs."""


def reconcile_import_runs() -> None:
    """Re-enqueue import runs stuck past their lease (filled in with the import flow)."""
