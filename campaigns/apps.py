from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns, cohorts and incentives"

    def ready(self):
        from campaigns import config  # noqa: F401 - the active-campaign cache follows writes (signals)
        from campaigns.incentives import incentives_preview, incentives_provide, incentives_reverse
        from campaigns.selectors import action_codes
        from rewards.contributions import (
            register_action_catalog,
            register_incentive_provider,
            register_refund_listener,
        )

        register_incentive_provider(incentives_provide, preview=incentives_preview)
        register_refund_listener(incentives_reverse)
        register_action_catalog(lambda tenant: sorted(action_codes(tenant=tenant)))
