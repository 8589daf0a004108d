"""Catalog search (seed 003): PostgreSQL full-text search over names and descriptions (a GIN
index on the trigger-kept `search_vector`, ranked, the last word matched as a prefix) or, when
no item has every word (typos), trigram word similarity on the name (a GIN `gin_trgm_ops`
index). Results are cached for five minutes under the tenant's generation
(core.cache.TenantCache), which every change to the tenant's catalog replaces, so an edit
shows in the next search. On SQLite (`make run` without a DATABASE_URL) search falls back to
case-insensitive substring matching."""

import re

from django.conf import settings
from django.contrib.postgres.search import SearchQuery, SearchRank, TrigramWordSimilarity
from django.db import connection
from django.db.models import F, Q, QuerySet
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from prometheus_client import Counter

from catalog.models import Category, Item
from core.cache import TenantCache

MAX_RESULTS = 1000  # ranked matches kept per query; deeper pages are not served
MAX_TERMS = 8
SEARCH_CACHE = Counter("catalog_search_cache_total", "Catalog searches by cache outcome", ["result"])

results_cache = TenantCache("catalog:search", ttl=lambda: settings.CATALOG_SEARCH_CACHE_SECONDS)


def catalog_changed(tenant_pk) -> None:
    """Retire the tenant's cached searches when the current transaction commits."""
    results_cache.retire_on_commit(tenant_pk)


def terms(query: str) -> list[str]:
    """The words of a query: letters and digits in any script, lowercased, at most eight."""
    return [word for word in re.split(r"[\W_]+", query.lower()) if word][:MAX_TERMS]


def _tsquery(words: list[str]) -> SearchQuery:
    # The last word is matched as a prefix (people search as they type); the others whole,
    # which the GIN index answers faster.
    raw = " & ".join([*words[:-1], f"{words[-1]}:*"])
    return SearchQuery(raw, search_type="raw", config="simple")


def matches(queryset: QuerySet[Item], query: str, *, limit: int = MAX_RESULTS) -> tuple[list[str], str]:
    """The ids of the items of `queryset` that match `query`, best first, and how they
    matched: "fulltext" (every word, ranked by full-text rank) or, when no item has every
    word, "similar" (names close to the query, for typos, ranked by trigram similarity).
    Each is one query that its GIN index answers; an OR of the two could use neither."""
    words = terms(query)
    if not words:
        return [], "fulltext"
    if connection.vendor != "postgresql":
        match = Q()
        for word in words:
            match |= Q(name__icontains=word) | Q(description__icontains=word)
        return [str(pk) for pk in queryset.filter(match).order_by("name", "pk").values_list("pk", flat=True)[:limit]], (
            "fulltext"
        )
    tsquery = _tsquery(words)
    found = (
        queryset.filter(search_vector=tsquery)
        .annotate(score=SearchRank(F("search_vector"), tsquery))
        .order_by("-score", "name", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    ids = [str(pk) for pk in found]
    if ids:
        return ids, "fulltext"
    text = " ".join(words)
    similar = (
        queryset.filter(name__trigram_word_similar=text)
        .annotate(score=TrigramWordSimilarity(text, "name"))
        .order_by("-score", "name", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    return [str(pk) for pk in similar], "similar"


def search_ids(*, tenant_pk, query: str, queryset: QuerySet[Item], parts: dict) -> tuple[list[str], str, bool]:
    """(ids, match, hit): the best matches (at most MAX_RESULTS) and how they matched, from
    the cache when this query with these filters (`parts`) was answered since the catalog
    last changed, and whether it was."""

    def load() -> tuple[list[str], str]:
        return matches(queryset, query)

    (ids, match), hit = results_cache.get_or_load(
        tenant_pk=tenant_pk, parts={"q": " ".join(terms(query)), **parts}, load=load
    )
    SEARCH_CACHE.labels(result="hit" if hit else "miss").inc()
    return ids, match, hit


@receiver([post_save, post_delete], sender=Item)
@receiver([post_save, post_delete], sender=Category)
def _catalog_written(sender, instance, **kwargs) -> None:
    # The services retire the cache themselves; this catches writes that bypass them (the
    # admin, CSV imports, a shell), so none leaves stale search results behind.
    catalog_changed(instance.tenant_id)
