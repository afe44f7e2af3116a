"""A ModelAdmin that only shows: for audit rows and for rows only services may write."""

from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """View-only: never added, changed or deleted through the admin."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
