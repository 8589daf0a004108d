from core.exceptions import Conflict, DomainError, NotFound, Unprocessable


class MemberNotFound(NotFound):
    default_code = "member_not_found"
    default_message = "Member not found."


class MemberAlreadyExists(Conflict):
    default_code = "member_exists"
    default_message = "A member with this memberRef already exists."


class MemberInactive(Unprocessable):
    default_code = "member_inactive"
    default_message = "This member's account is closed."


class InsufficientPoints(Unprocessable):
    default_code = "insufficient_points"
    default_message = "The balance is too low for this debit."


class InvalidAmount(Unprocessable):
    default_code = "invalid_amount"
    default_message = "Points must be a positive whole number."


class IdempotencyKeyConflict(Conflict):
    default_code = "idempotency_key_conflict"
    default_message = "This idempotency key was already used for a different transfer."


class CategoryNotFound(NotFound):
    default_code = "category_not_found"
    default_message = "Spend category not found."


class CategoryAlreadyExists(Conflict):
    default_code = "category_exists"
    default_message = "A spend category with this code already exists."


class MultiplierNotFound(NotFound):
    default_code = "multiplier_not_found"
    default_message = "Multiplier not found."


class CreditPackageNotFound(NotFound):
    default_code = "credit_package_not_found"
    default_message = "Credit package not found."


class CreditPackageAlreadyExists(Conflict):
    default_code = "credit_package_exists"
    default_message = "A credit package with this code already exists."


class CreditPackageInactive(Unprocessable):
    default_code = "credit_package_inactive"
    default_message = "This credit package is not on sale."


class CreditPurchaseNotFound(NotFound):
    default_code = "credit_purchase_not_found"
    default_message = "Credit purchase not found."


class PaymentDeclined(DomainError):
    """The gateway declined the charge: nothing was credited."""

    status_code = 402
    default_code = "payment_declined"
    default_message = "The payment was declined."


class PaymentGatewayUnavailable(DomainError):
    """The gateway could not be reached: nothing was charged or credited."""

    status_code = 503
    default_code = "payment_gateway_unavailable"
    default_message = "The payment gateway cannot be reached; nothing was charged. Try again later."


class NotificationNotFound(NotFound):
    default_code = "notification_not_found"
    default_message = "No event with this id among the member's notifications."


class OutboundEventNotFound(NotFound):
    default_code = "event_not_found"
    default_message = "No outbound event with this id."
