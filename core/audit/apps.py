from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "core.audit"
    label = "audit"
    verbose_name = "Audit log"

    def ready(self):
        from core.audit.tracking import audited_models_register

        audited_models_register()
