from django.contrib import admin

from core.admin_scoping import is_platform_staff
from core.admin_services import ReadOnlyAdminMixin
from core.models import IdempotencyRecord

admin.site.site_header = "Loyalty back office"
admin.site.site_title = "Loyalty back office"
admin.site.index_title = "Programs"


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Stored first responses to Idempotency-Key requests; platform staff read them to debug
    retries. Keys are scoped by tenant or platform user, so operators never see them."""

    list_display = ("scope", "key", "status", "response_status", "created_at", "locked_at")
    list_filter = ("status", "created_at")
    search_fields = ("scope__exact", "key__exact")
    search_help_text = "Exact scope or key."
    ordering = ("-created_at", "-pk")
    show_full_result_count = False

    def has_module_permission(self, request):
        return is_platform_staff(request.user)

    def has_view_permission(self, request, obj=None):
        return is_platform_staff(request.user)
