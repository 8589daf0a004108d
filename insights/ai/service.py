"""`POST /api/v1/ai/recommendation` (seed 003): a category of rewards for the member, why, and
its rewards best value first. The LLM provider answers when one is configured
(AI_PROVIDER_URL); the rules answer otherwise, and in its place whenever it times out, fails
or answers anything but the JSON asked for. The result says which engine answered and why
the rules stood in."""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from prometheus_client import Counter

from catalog.models import Category
from catalog.selectors import viewer_for
from insights.ai.base import ERROR, RULES, AiContext, Choice, Engine, ProviderFailure
from insights.ai.llm import LlmEngine
from insights.ai.rules import RulesEngine
from insights.recommendations import category_rewards, category_values, tier_of
from insights.value import ValuedItem
from rewards.models import Member
from rewards.selectors import points_expiring
from tenants.models import Tenant

logger = logging.getLogger(__name__)

PRODUCTS = 10
MAX_REQUEST = 500  # characters of the member's own words passed on

ANSWERS = Counter(
    "loyalty_ai_recommendations_total",
    "AI recommendations by the engine that answered and why the rules stood in (none: they were asked)",
    ["engine", "fallback"],
)


@dataclass(frozen=True)
class AiRecommendation:
    member: Member
    balance: int
    category: Category | None
    reason: str
    products: list[ValuedItem]
    engine: str  # "rules" or "llm"
    fallback_reason: str | None  # why the rules answered for the provider: timeout, error, malformed


def provider_engine() -> Engine | None:
    """The configured LLM provider, or None."""
    return LlmEngine.from_settings() if settings.AI_PROVIDER_URL else None


def ai_recommendation_get(*, tenant: Tenant, member: Member, request: str = "") -> AiRecommendation:
    """The recommendation for `member`; `request` is what they asked for, in their words."""
    viewer = viewer_for(tenant=tenant, member=member)
    expiring = points_expiring(member=member, within=timedelta(days=settings.INSIGHTS_EXPIRING_SOON_DAYS))
    context = AiContext(
        balance=viewer.balance,
        tier_id=tier_of(viewer),
        discount_percentage=viewer.discount_percentage,
        currency=tenant.currency,
        expiring_points=expiring["points"],
        categories=category_values(tenant=tenant, member=member, viewer=viewer),
        request=request[:MAX_REQUEST],
    )
    choice, engine, fallback = _choose(context)
    ANSWERS.labels(engine=engine, fallback=fallback or "none").inc()
    category = choice.category.category if choice.category is not None else None
    products = category_rewards(tenant=tenant, viewer=viewer, category=category, limit=PRODUCTS) if category else []
    return AiRecommendation(
        member=member,
        balance=viewer.balance,
        category=category,
        reason=choice.reason,
        products=products,
        engine=engine,
        fallback_reason=fallback,
    )


def _choose(context: AiContext) -> tuple[Choice, str, str | None]:
    provider = provider_engine()
    # With nothing to choose from there is nothing to ask.
    if provider is not None and context.categories:
        try:
            return provider.choose(context), provider.name, None
        except ProviderFailure as exc:
            logger.warning(
                "AI provider gave no usable answer; the rules answer",
                extra={"fallback": exc.reason, "error": str(exc)},
            )
            return RulesEngine().choose(context), RULES, exc.reason
        except Exception:  # a fault on our side of the call must not cost the member an answer either
            logger.exception("AI provider call failed; the rules answer", extra={"fallback": ERROR})
            return RulesEngine().choose(context), RULES, ERROR
    return RulesEngine().choose(context), RULES, None
