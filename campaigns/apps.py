from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns, cohorts and incentives"

    def ready(self):
        # The cache of active campaigns follows campaign writes (signals, after commit).
        from campaigns import config  # noqa: F401
