"""App config for the project package (holds the abstract bases and worker glue)."""

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.db.models.signals import post_migrate

from cdpstage.dbroles import app_privileges_grant


class CdpStageConfig(AppConfig):
    name = "cdpstage"
    verbose_name = "CDP Stage"

    def ready(self) -> None:
        # Once per migrate (and flush), as the owner: every table, new ones included.
        post_migrate.connect(app_privileges_grant, sender=self, dispatch_uid="app_privileges")


class CdpStageAdminConfig(admin_apps.AdminConfig):
    """Installs CdpStageAdminSite as `admin.site`, so every `@admin.register` lands on it."""

    default = False  # named explicitly in INSTALLED_APPS; CdpStageConfig is this module's default
    default_site = "cdpstage.admin_site.CdpStageAdminSite"
