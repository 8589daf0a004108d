"""Catalog search (seed 003): PostgreSQL full-text search over names and descriptions (a GIN
index on the tenant and the trigger-kept `search_vector`, ranked, the last word matched as a
prefix). When no item has every word (typos), each unknown word is corrected to the closest
word of the tenant's catalog (its vocabulary, read with `ts_stat` and kept ten minutes) and
the full-text search runs again, which the index answers in milliseconds where comparing the
query with every similar name took tens; only when that finds nothing does trigram word
similarity on the name (a GIN `gin_trgm_ops` index) answer. Results are cached for five
minutes under the tenant's generation (core.cache.TenantCache), which every change to the
tenant's catalog replaces, so an edit shows in the next search. On SQLite (`make run`
without a DATABASE_URL) search falls back to case-insensitive substring matching."""

import functools
import logging
import re

from django.conf import settings
from django.contrib.postgres.search import SearchQuery, SearchRank, TrigramWordSimilarity
from django.core.cache import cache
from django.db import connection
from django.db.models import F, Q, QuerySet
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from prometheus_client import Counter

from catalog.models import Category, Item
from core.cache import TenantCache

MAX_RESULTS = 1000  # ranked matches kept per query; deeper pages are not served
MAX_TERMS = 8
VOCABULARY_SECONDS = 600
CORRECTION_THRESHOLD = 0.5  # trigram similarity a known word needs to stand in for a typo
SEARCH_CACHE = Counter("catalog_search_cache_total", "Catalog searches by cache outcome", ["result"])

logger = logging.getLogger(__name__)
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


def vocabulary(tenant_pk) -> list[str]:
    """The words of the tenant's item names and descriptions, the most common first. Kept ten
    minutes, not retired by catalog writes: it only suggests corrections, and the corrected
    query still runs on the live catalog (a word added since is found by the trigram fallback)."""
    key = f"catalog:vocabulary:{tenant_pk}"
    try:
        words = cache.get(key)
    except Exception as exc:  # noqa: BLE001 - the database answers while the cache cannot
        logger.warning("vocabulary read from the database: cache failed", extra={"error": str(exc)})
        words = None
    if words is None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT word FROM ts_stat(format("
                "'SELECT search_vector FROM catalog_item WHERE tenant_id = %%L', %s::text)) "
                "ORDER BY ndoc DESC, word",
                [str(tenant_pk)],
            )
            words = [row[0] for row in cursor.fetchall()]
        try:
            cache.set(key, words, VOCABULARY_SECONDS)
        except Exception as exc:  # noqa: BLE001
            logger.warning("vocabulary not cached", extra={"error": str(exc)})
    return words


@functools.lru_cache(maxsize=20_000)
def _trigrams(word: str) -> frozenset[str]:
    padded = f"  {word} "  # as pg_trgm pads a word
    return frozenset(padded[i : i + 3] for i in range(len(padded) - 2))


def corrected(words: list[str], known: list[str]) -> list[str] | None:
    """`words` with each one the catalog does not have replaced by the most similar word it
    has (pg_trgm's similarity, at least CORRECTION_THRESHOLD; the most common on a tie); the
    last word counts as known when it starts one. None when nothing could be corrected."""
    known_set = set(known)
    result, changed = [], False
    for position, word in enumerate(words):
        last = position == len(words) - 1
        if word in known_set or (last and any(candidate.startswith(word) for candidate in known)):
            result.append(word)
            continue
        grams = _trigrams(word)
        best, best_score = None, CORRECTION_THRESHOLD
        for candidate in known:
            other = _trigrams(candidate)
            score = len(grams & other) / len(grams | other)
            if score > best_score:
                best, best_score = candidate, score
        if best is None:
            return None
        result.append(best)
        changed = True
    return result if changed else None


def _fulltext(queryset: QuerySet[Item], words: list[str], limit: int) -> list[str]:
    tsquery = _tsquery(words)
    found = (
        queryset.filter(search_vector=tsquery)
        .annotate(score=SearchRank(F("search_vector"), tsquery))
        .order_by("-score", "name", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    return [str(pk) for pk in found]


def matches(queryset: QuerySet[Item], query: str, *, limit: int = MAX_RESULTS, tenant_pk=None) -> tuple[list[str], str]:
    """The ids of the items of `queryset` that match `query`, best first, and how they
    matched: "fulltext" (every word, ranked by full-text rank) or, when no item has every
    word, "similar": the query with its typos corrected to words of the catalog of `tenant_pk`
    (full-text again), else names close to the query (ranked by trigram similarity). Each is
    one query that its GIN index answers; an OR of them could use neither."""
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
    ids = _fulltext(queryset, words, limit)
    if ids:
        return ids, "fulltext"
    fixed = corrected(words, vocabulary(tenant_pk)) if tenant_pk is not None else None
    if fixed:
        ids = _fulltext(queryset, fixed, limit)
        if ids:
            return ids, "similar"
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
        return matches(queryset, query, tenant_pk=tenant_pk)

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
