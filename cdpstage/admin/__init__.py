"""Admin pieces several apps share (the change lists' paginator, the read-only admin), and the
job dashboard's admin entry, registered here because Django's autodiscovery imports this
package as cdpstage's admin module."""

from cdpstage.admin.jobs import JobDashboardAdmin

__all__ = ["JobDashboardAdmin"]
