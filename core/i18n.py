"""Choosing the locale a localized name is shown in: `?locale=`, else the caller's
Accept-Language, else the tenant's default locale, else English, else any."""

FALLBACK_LOCALE = "en"


def accept_language_parse(header: str | None) -> list[str]:
    """The language tags of an Accept-Language header, most wanted first (q=0 and `*`
    dropped; equal weights keep their order)."""
    if not header:
        return []
    weighted = []
    for position, part in enumerate(header.split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*" or len(tag) > 35:
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = -1.0
        if 0 < quality <= 1:
            weighted.append((-quality, position, tag))
    return [tag for _, _, tag in sorted(weighted)]


def _primary(tag: str) -> str:
    return tag.split("-", 1)[0].split("_", 1)[0].lower()


def locale_match(wanted: str, available: list[str]) -> str | None:
    """The available locale that best serves `wanted`: the same tag (case-insensitively),
    else its language alone (`ar-EG` -> `ar`), else the same language in any region
    (`ar` -> `ar-EG`); None if the language is not available."""
    wanted = wanted.strip().replace("_", "-").lower()
    if not wanted:
        return None
    by_lower = {tag.lower(): tag for tag in sorted(available)}
    if wanted in by_lower:
        return by_lower[wanted]
    primary = _primary(wanted)
    if primary in by_lower:
        return by_lower[primary]
    for tag in sorted(available):
        if _primary(tag) == primary:
            return tag
    return None


def locale_choose(
    *, names: dict, requested: str | None = None, accept_language: str | None = None, default_locale: str = "en"
) -> str | None:
    """The locale to show a localized name in: `?locale=`, else the Accept-Language tags by
    weight, else the tenant's default locale, else English, else any (the first by tag)."""
    available = [tag for tag, name in names.items() if isinstance(name, str) and name] if names else []
    if not available:
        return None
    wanted = [requested] if requested else []
    wanted += accept_language_parse(accept_language)
    wanted += [default_locale or FALLBACK_LOCALE, FALLBACK_LOCALE]
    for tag in wanted:
        found = locale_match(tag, available)
        if found is not None:
            return found
    return sorted(available)[0]
