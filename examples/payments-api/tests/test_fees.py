from decimal import Decimal

import pytest
from payments.fees import QuoteError, quote


def test_fee_is_percentage_plus_fixed_part():
    result = quote("100", "EUR")
    assert result == {"amount": "100", "currency": "EUR", "fee": "1.65", "total": "101.65"}


def test_currency_is_case_insensitive():
    assert quote("10", "usd")["currency"] == "USD"


@pytest.mark.parametrize("amount", ["0", "-5", "abc", "NaN", "1000001"])
def test_bad_amounts_are_refused(amount):
    with pytest.raises(QuoteError):
        quote(amount, "EUR")


def test_unknown_currency_is_refused():
    with pytest.raises(QuoteError, match="unsupported currency"):
        quote("10", "XYZ")


def test_fee_is_rounded_half_up():
    assert Decimal(quote("0.5", "GBP")["fee"]) == Decimal("0.21")
