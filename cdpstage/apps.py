"""App config for the project package (holds the abstract bases and worker glue)."""

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CdpStageConfig(AppConfig):
    name = "cdpstage"
    verbose_name = "CDP Stage"


class CdpStageAdminConfig(admin_apps.AdminConfig):
    """Installs CdpStageAdminSite as `admin.site`, so every `@admin.register` lands on it."""

    default = False  # named explicitly in INSTALLED_APPS; CdpStageConfig is this module's default
    default_site = "cdpstage.admin_site.CdpStageAdminSite"
