from core.exceptions import Conflict, NotFound


class TierNotFound(NotFound):
    default_code = "tier_not_found"
    default_message = "VIP tier not found."


class TierAlreadyExists(Conflict):
    default_code = "tier_exists"
    default_message = "A VIP tier with this tierId already exists."
