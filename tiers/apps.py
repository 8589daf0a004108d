from django.apps import AppConfig


class TiersConfig(AppConfig):
    name = "tiers"
    verbose_name = "VIP tiers"

    def ready(self):
        from rewards import contributions
        from tiers import (
            cache,  # noqa: F401 - tier writes anywhere (admin, shell) retire cached reads
            qualification,
        )

        contributions.register_tier_provider(qualification.tier_context, batch=qualification.tier_contexts)
        contributions.register_tier_ladder(qualification.tier_ladder)
        contributions.register_points_listener(
            qualification.points_changed,
            batch=qualification.points_changed_batch,
            headroom=qualification.points_headroom,
        )
        contributions.register_member_created_listener(qualification.member_created)
        contributions.register_member_extension("tier", qualification.member_tier_summary)
