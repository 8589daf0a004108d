from django.apps import AppConfig


class RewardsConfig(AppConfig):
    name = "rewards"
    verbose_name = "Members and points"

    def ready(self):
        # Connects the signals that keep the cached category configuration fresh.
        from rewards import categories  # noqa: F401
