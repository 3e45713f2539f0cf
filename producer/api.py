"""The Python API for submitting disconnect requests: :class:`Producer`.

Every submission is written to the ledger (which enqueues its job in the same atomic step) before
the call returns. Validation happens first: a bad id raises :class:`InvalidSubmission` and nothing
is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger.models import ACCOUNT_ID_RE, CONNECTED_ACCOUNT_RE, RequestSource
from ledger.store import Ledger, Submission

MAX_REASON_CHARS = 500


class InvalidSubmission(ValueError):
    """The submission is malformed; ``field`` names the offending input."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class SubmitItem:
    """One validated request to submit."""

    account_id: str
    source: RequestSource
    reference: str = ""
    reason: str = ""
    stripe_account: str | None = None


def validate_item(
    account_id: str,
    *,
    source: RequestSource | str,
    reference: str = "",
    reason: str = "",
    stripe_account: str | None = None,
) -> SubmitItem:
    """Check one submission; raise :class:`InvalidSubmission` naming the bad field."""
    account_id = account_id.strip()
    if not ACCOUNT_ID_RE.match(account_id):
        raise InvalidSubmission(
            f"{account_id!r} is not a Financial Connections account id (fca_…)", "account_id"
        )
    if stripe_account is not None and not CONNECTED_ACCOUNT_RE.match(stripe_account):
        raise InvalidSubmission(
            f"{stripe_account!r} is not a connected account id (acct_…)", "stripe_account"
        )
    try:
        source = RequestSource(source)
    except ValueError:
        choices = ", ".join(s.value for s in RequestSource)
        raise InvalidSubmission(f"source must be one of: {choices}", "source") from None
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidSubmission(f"reason is longer than {MAX_REASON_CHARS} characters", "reason")
    return SubmitItem(account_id, source, reference, reason, stripe_account)


class Producer:
    """Submits disconnect requests into the ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def submit(
        self,
        account_id: str,
        *,
        source: RequestSource | str,
        reference: str = "",
        reason: str = "",
        stripe_account: str | None = None,
    ) -> Submission:
        """Record one request; returns its id, or the id of the active request it merged into."""
        item = validate_item(
            account_id,
            source=source,
            reference=reference,
            reason=reason,
            stripe_account=stripe_account,
        )
        return await self.submit_item(item)

    async def submit_item(self, item: SubmitItem) -> Submission:
        return await self.ledger.submit(
            item.account_id,
            source=item.source,
            reference=item.reference,
            reason=item.reason,
            stripe_account=item.stripe_account,
        )

    async def submit_all(self, items: Sequence[SubmitItem]) -> list[Submission]:
        """Submit already-validated items in order."""
        return [await self.submit_item(item) for item in items]
