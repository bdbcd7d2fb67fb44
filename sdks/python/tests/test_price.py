"""Prices in major units become exact minor units, or are refused."""

from decimal import Decimal

import pytest

from walleot import Mode, Price, PriceError, price


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (0.29, "USD", 29),
        (0.19, "usd", 19),
        (0.50, "USD", 50),
        ("0.50", "USD", 50),
        (Decimal("1.10"), "EUR", 110),
        (2, "USD", 200),
        (500, "JPY", 500),
        ("500", "jpy", 500),
        (1.005, "KWD", 1005),
    ],
)
def test_prices_are_exact_minor_units(amount, currency, minor):
    assert Price.of(amount, currency).minor == minor


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        (0, "USD"),
        (0.001, "USD"),
        (0.295, "USD"),
        (1.5, "JPY"),
        (-1, "USD"),
        (1, "XYZ"),
        ("abc", "USD"),
        (float("nan"), "USD"),
        (float("inf"), "USD"),
        (True, "USD"),
        (None, "USD"),
        (1_000_000, "USD"),
        (0.1 + 0.2, "USD"),  # 0.30000000000000004: not what anyone meant
    ],
)
def test_inexact_or_invalid_prices_are_refused(amount, currency):
    with pytest.raises(PriceError):
        Price.of(amount, currency)


def test_meta_and_display_show_major_units():
    assert Price.of(0.50, "USD").meta() == {"amount": 0.5, "currency": "USD"}
    assert Price.of(500, "JPY").meta() == {"amount": 500, "currency": "JPY"}
    assert Price.of(0.19, "usd").display() == "0.19 USD"
    assert Price.of(7, "usd").display() == "7.00 USD"
    assert Price.of("1.234", "BHD").display() == "1.234 BHD"


def test_the_decorator_marks_the_function_and_keeps_it():
    def tool(a: int) -> int:
        return a

    marked = price(0.5, "USD")(tool)
    assert marked is tool
    assert tool.__walleot_price__ == Price(50, "USD")
    with pytest.raises(PriceError):
        price(0.001, "USD")  # refused where it is written, not at the first call


def test_modes_parse_in_every_spelling():
    for raw in ("two-step", "TWO_STEP", "two_step", Mode.TWO_STEP):
        assert Mode.parse(raw) is Mode.TWO_STEP
    assert Mode.parse("DYNAMIC_TOOLS") is Mode.DYNAMIC_TOOLS
    with pytest.raises(ValueError):
        Mode.parse("teleport")
