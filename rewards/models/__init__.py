from rewards.models.credit import CreditPackage, CreditPurchase
from rewards.models.earning import InboundEvent, Multiplier, MultiplierUsage, SpendCategory
from rewards.models.ledger import Account, EarnedLot, Transfer
from rewards.models.members import Member
from rewards.models.outbox import OutboxEvent

__all__ = [
    "Account",
    "CreditPackage",
    "CreditPurchase",
    "EarnedLot",
    "InboundEvent",
    "Member",
    "Multiplier",
    "MultiplierUsage",
    "OutboxEvent",
    "SpendCategory",
    "Transfer",
]
