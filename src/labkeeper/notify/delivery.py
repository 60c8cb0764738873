"""What a failed delivery says: whether trying again can help, and when."""

from __future__ import annotations


class DeliveryError(Exception):
    """A notification could not be delivered this time."""

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
