"""Admin pieces several apps share (the change lists' paginator, the read-only admin)."""
