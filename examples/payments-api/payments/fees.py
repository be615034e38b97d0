"""Fee rules for a payment quote. Pure functions, unit-tested."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CURRENCIES = {"EUR", "USD", "GBP"}
PERCENT = Decimal("0.014")
FIXED = {"EUR": Decimal("0.25"), "USD": Decimal("0.30"), "GBP": Decimal("0.20")}
MAX_AMOUNT = Decimal("1000000")


class QuoteError(ValueError):
    """The request cannot be quoted."""


def quote(amount: str, currency: str) -> dict[str, str]:
    """The fee and the total for paying `amount` in `currency`."""
    currency = currency.upper()
    if currency not in CURRENCIES:
        raise QuoteError(f"unsupported currency {currency!r}")
    try:
        value = Decimal(amount)
    except ArithmeticError as exc:
        raise QuoteError(f"amount {amount!r} is not a number") from exc
    if not value.is_finite() or value <= 0 or value > MAX_AMOUNT:
        raise QuoteError(f"amount must be between 0 and {MAX_AMOUNT}")
    fee = (value * PERCENT + FIXED[currency]).quantize(Decimal("0.01"), ROUND_HALF_UP)
    total = (value + fee).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return {"amount": str(value), "currency": currency, "fee": str(fee), "total": str(total)}
