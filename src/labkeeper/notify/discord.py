"""Discord webhooks: one JSON POST per message, users mentioned as `<@discord_id>`."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from labkeeper.notify.delivery import DeliveryError

# Discord refuses longer content.
MAX_CONTENT = 2000


def payload(content: str, mention_ids: Sequence[str]) -> dict[str, object]:
    """The webhook body: mentions first, and only those users may be pinged."""
    mentions = " ".join(f"<@{i}>" for i in mention_ids)
    text = f"{mentions} {content}" if mentions else content
    if len(text) > MAX_CONTENT:
        text = text[: MAX_CONTENT - 1] + "…"
    return {
        "content": text,
        "allowed_mentions": {"parse": [], "users": list(mention_ids)[:100]},
    }


def post(url: str, *, content: str, mention_ids: Sequence[str], timeout: float = 10.0) -> None:
    """Send one message; DeliveryError says whether a retry may help (the URL is a secret
    and never appears in errors)."""
    try:
        response = httpx.post(url, json=payload(content, mention_ids), timeout=timeout)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"the webhook could not be reached ({type(exc).__name__})") from None
    if response.status_code == 429:
        retry_after: float | None = None
        try:
            retry_after = float(response.headers.get("retry-after") or "")
        except ValueError:
            try:
                retry_after = float(response.json().get("retry_after"))
            except (ValueError, TypeError, AttributeError):
                retry_after = None
        raise DeliveryError("the webhook is rate limited (429)", retry_after=retry_after)
    if response.status_code >= 500:
        raise DeliveryError(f"the webhook answered {response.status_code}")
    if response.status_code >= 400:
        raise DeliveryError(
            f"the webhook refused the message ({response.status_code}): {response.text[:200]}",
            retryable=False,
        )
