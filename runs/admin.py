from django.contrib import admin

from llmops.admin import ReadOnlyAdmin
from runs.models import Provider, Run


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    """The secret itself is never stored: only the name of the environment variable holding it."""

    list_display = ["name", "kind", "base_url", "api_key_env", "timeout", "enabled", "updated_at"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "base_url"]


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    """Read-only: runs are created through the API or commands and finished by workers."""

    list_display = [
        "id",
        "owner",
        "prompt_version",
        "provider",
        "model",
        "status",
        "total_tokens",
        "latency_ms",
        "created_at",
    ]
    list_filter = ["status", "provider", "tokens_estimated", "created_at"]
    search_fields = ["id", "owner__username", "prompt_version__prompt__name", "model", "error_code", "idempotency_key"]
    list_select_related = ["owner", "prompt_version__prompt"]
    date_hierarchy = "created_at"
    exclude = ["request_hash"]
