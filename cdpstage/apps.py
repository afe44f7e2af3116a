"""App config for the project package (holds the abstract bases and worker glue)."""

from django.apps import AppConfig


class CdpStageConfig(AppConfig):
    name = "cdpstage"
    verbose_name = "CDP Stage"
