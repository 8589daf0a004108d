from core.exceptions import Conflict, NotFound, Unprocessable


class RedemptionNotFound(NotFound):
    default_code = "redemption_not_found"
    default_message = "Redemption not found."


class NoFulfilmentPartner(Unprocessable):
    default_code = "no_fulfilment_partner"
    default_message = "No partner is set up to fulfil this kind of item; it cannot be redeemed now."


class NotCancellable(Conflict):
    default_code = "not_cancellable"
    default_message = "Only a redemption that has not started fulfilment can be cancelled."


class PartnerConfigNotFound(NotFound):
    default_code = "partner_not_found"
    default_message = "Partner configuration not found."


class PartnerTargetRefused(Unprocessable):
    default_code = "partner_target_refused"
    default_message = "The partner's URL cannot be called."
