"""Operator roles and what each may change, in the back office and through the API alike.

The values are those of `tenants.models.Operator.Role` (core imports no app). The roles nest:
an owner may do whatever a manager may, a manager whatever support may; a viewer only reads.
"""

OWNER = "OWNER"
MANAGER = "MANAGER"
SUPPORT = "SUPPORT"
VIEWER = "VIEWER"
ALL_ROLES = (OWNER, MANAGER, SUPPORT, VIEWER)

# The tenant itself: its settings and limits, operators, API keys, webhook endpoints and
# their secrets, partner connections.
ACCOUNT_ROLES = (OWNER,)
# The program: campaigns, cohorts, actions, coupon pools, tiers, the catalog, spend
# categories and multipliers, credit packages.
PROGRAM_ROLES = (OWNER, MANAGER)
# Day-to-day operations: members, point adjustments, redemption retries and refunds,
# dead-letter replays, purchase reconciliation.
OPERATIONS_ROLES = (OWNER, MANAGER, SUPPORT)
