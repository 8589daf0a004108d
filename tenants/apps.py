from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants"

    def ready(self) -> None:
        # Connects the limits cache's retirement (a signal) in every process that can write limits.
        from tenants import selectors  # noqa: F401
