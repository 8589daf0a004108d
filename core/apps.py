from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Platform core"

    def ready(self):
        from django.db.models.signals import post_migrate

        from core.rls import rls_sync

        # After every migrate, so a tenant table is walled in by the migrate that creates it.
        post_migrate.connect(rls_sync, sender=self, dispatch_uid="core.rls.rls_sync")
