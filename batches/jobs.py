"""Background jobs for batches."""


def reconcile_batches() -> None:
    """Re-enqueue batch work stuck past its lease (filled in with the batch flow)."""
