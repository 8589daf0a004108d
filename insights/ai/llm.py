"""An LLM provider over an OpenAI-compatible chat-completions API (the optional engine of
`POST /api/v1/ai/recommendation`; insights.ai.fake_provider speaks it for development and tests).

    POST {AI_PROVIDER_URL}                      the full endpoint: https://host/v1/chat/completions
         Authorization: Bearer {AI_PROVIDER_API_KEY}             (when one is set)
         {"model": AI_PROVIDER_MODEL, "temperature": 0, "response_format": {"type": "json_object"},
          "messages": [{"role": "system", ...}, {"role": "user", "content": "<the member as JSON>"}]}
      -> 200 {"choices": [{"message": {"content": "{\"categoryId\": \"travel\", \"reason\": \"...\"}"}}]}

The content is parsed strictly: a JSON object with exactly `categoryId` (the code of one of
the categories offered) and `reason` (a non-empty string of at most 1,000 characters).
Anything else is ProviderMalformed; an HTTP error status or a failure to connect is
ProviderError; no complete answer within the timeout is ProviderTimeout. There are no
retries: the rules answer at once instead.

One deadline (AI_PROVIDER_TIMEOUT_SECONDS) covers connecting, sending and reading the whole
answer: each socket operation waits only for the time left, and the body is read one system
call at a time, so a provider trickling bytes cannot stretch the call (urllib would let every
read wait the whole timeout). Resolving the host name is not under it, nor are proxies from
the environment used. The member is sent as figures: no memberRef.
"""

import json
import time
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from urllib.parse import urlsplit

from django.conf import settings

from insights.ai.base import (
    LLM,
    AiContext,
    Choice,
    ProviderError,
    ProviderFailure,
    ProviderMalformed,
    ProviderTimeout,
)

MAX_ANSWER_BYTES = 256 * 1024
MAX_REASON = 1000
MAX_DESCRIPTION = 300
SYSTEM_PROMPT = (
    "You recommend one reward category to a member of a loyalty program. The user message gives, "
    "as JSON, the member's points and the categories of rewards they may redeem, with what each "
    "offers them. Reply with a JSON object and nothing else, exactly: "
    '{"categoryId": "<the categoryId of one of the categories given>", '
    '"reason": "<one or two sentences, addressed to the member>"}.'
)


def exchange(url: str, *, method: str, timeout: float, body: bytes | None = None, headers=None) -> tuple[int, bytes]:
    """(status, body) of one HTTP request, all of it within `timeout` seconds."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProviderError(f"unsupported provider URL scheme {parts.scheme!r}")
    deadline = time.monotonic() + timeout

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProviderTimeout(f"no complete answer within {timeout} s")
        return remaining

    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = (HTTPSConnection if https else HTTPConnection)(parts.hostname, port, timeout=left())
    try:
        connection.connect()
        connection.sock.settimeout(left())
        connection.request(method, path, body=body, headers=headers or {})
        connection.sock.settimeout(left())
        response = connection.getresponse()
        chunks, size = [], 0
        while True:
            connection.sock.settimeout(left())
            chunk = response.read1(64 * 1024)
            if not chunk:
                return response.status, b"".join(chunks)
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise ProviderMalformed(f"an answer over {MAX_ANSWER_BYTES} bytes")
            chunks.append(chunk)
    except ProviderFailure:
        raise
    except TimeoutError as exc:
        raise ProviderTimeout(f"no complete answer within {timeout} s") from exc
    except (HTTPException, OSError) as exc:
        raise ProviderError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()


def provider_probe(*, url: str, timeout: float) -> None:
    """Whether the provider answers at all (readiness): any status below 500 within `timeout`
    will do (a 405 to a GET of the endpoint still says it is up). Raises a ProviderFailure."""
    status, _ = exchange(url, method="GET", timeout=timeout, headers={"Accept": "application/json"})
    if status >= 500:
        raise ProviderError(f"HTTP {status}")


def prompt(context: AiContext) -> dict:
    """What the provider is told about the member (the user message, as JSON)."""
    return {
        "member": {
            "points": context.balance,
            "tier": context.tier_id,
            "tierDiscountPercentage": str(context.discount_percentage),
            "pointsExpiringSoon": context.expiring_points,
            "currency": context.currency,
        },
        "request": context.request or None,
        "categories": [
            {
                "categoryId": value.category.code,
                "name": value.category.name,
                "description": value.category.description[:MAX_DESCRIPTION],
                "rewards": value.rewards,
                "redeemableNow": value.affordable,
                "bestValuePerPoint": None if value.best_value is None else str(value.best_value),
                "pointsToFirstReward": value.points_needed,
                "pastRedemptions": value.past_redemptions,
            }
            for value in context.categories
        ],
    }


def answer_content(raw: bytes) -> str:
    """The assistant message's content in a chat-completions answer."""
    try:
        envelope = json.loads(raw)
    except ValueError as exc:
        raise ProviderMalformed("the answer is not JSON") from exc
    try:
        content = envelope["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ProviderMalformed("the answer has no choices[0].message.content") from exc
    if not isinstance(content, str):
        raise ProviderMalformed("the message content is not a string")
    return content


def choice_parse(content: str, context: AiContext) -> Choice:
    """The choice in `content`, which must be exactly {"categoryId": <an offered code>, "reason": <text>}."""
    try:
        answer = json.loads(content)
    except ValueError as exc:
        raise ProviderMalformed("the content is not JSON") from exc
    if not isinstance(answer, dict) or set(answer) != {"categoryId", "reason"}:
        keys = sorted(answer) if isinstance(answer, dict) else type(answer).__name__
        raise ProviderMalformed(f"expected exactly categoryId and reason, got {keys}")
    category_id, reason = answer["categoryId"], answer["reason"]
    value = context.category(category_id) if isinstance(category_id, str) else None
    if value is None:
        raise ProviderMalformed("categoryId is not one of the categories offered")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise ProviderMalformed(f"reason must be a non-empty string of at most {MAX_REASON} characters")
    return Choice(category=value, reason=reason.strip())


class LlmEngine:
    name = LLM

    def __init__(self, *, url: str, model: str, api_key: str = "", timeout: float = 30.0):
        self.url, self.model, self.api_key, self.timeout = url, model, api_key, float(timeout)

    @classmethod
    def from_settings(cls) -> "LlmEngine":
        return cls(
            url=settings.AI_PROVIDER_URL,
            model=settings.AI_PROVIDER_MODEL,
            api_key=settings.AI_PROVIDER_API_KEY,
            timeout=settings.AI_PROVIDER_TIMEOUT_SECONDS,
        )

    def choose(self, context: AiContext) -> Choice:
        body = {
            "model": self.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": json.dumps(prompt(context), ensure_ascii=False)},
            ],
        }
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        status, raw = exchange(
            self.url, method="POST", timeout=self.timeout, body=json.dumps(body).encode(), headers=headers
        )
        if not 200 <= status < 300:
            raise ProviderError(f"HTTP {status}")
        return choice_parse(answer_content(raw), context)
