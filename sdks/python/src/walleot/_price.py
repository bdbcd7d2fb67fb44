"""Prices as people write them (0.50, "USD"), held as exact integer minor units."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, TypeVar

# ISO 4217 minor units, as the Walleot service counts them; every other listed code has 2.
_ZERO_DECIMAL = frozenset(
    "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split()
)
_THREE_DECIMAL = frozenset("BHD IQD JOD KWD LYD OMR TND".split())
_FOUR_DECIMAL = frozenset("CLF UYW".split())
_CODES = frozenset(
    """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN
    BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP
    ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR
    ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA
    MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK
    PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC
    SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND
    VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    """.split()
)

#: The largest amount the service accepts by default, in minor units.
MAX_MINOR = 99_999_999


class PriceError(ValueError):
    """A price that cannot be charged exactly."""


def exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit: 2 for USD, 0 for JPY."""
    code = currency.upper()
    if code not in _CODES:
        raise PriceError(f"unknown currency `{currency}`: use an ISO 4217 code such as USD")
    if code in _ZERO_DECIMAL:
        return 0
    if code in _THREE_DECIMAL:
        return 3
    if code in _FOUR_DECIMAL:
        return 4
    return 2


@dataclass(frozen=True)
class Price:
    """The price of one call: `minor` units (19 for 0.19 USD, 500 for 500 JPY)."""

    minor: int
    currency: str  # upper case

    @classmethod
    def of(cls, amount: Any, currency: str) -> "Price":
        """Reads a price in major units, exactly: `Price.of(0.29, "USD")` is 29 cents.

        A float is read as the shortest decimal that prints it (0.29, not
        0.28999999999999998), so what the author wrote is what is charged. An amount
        finer than the currency's minor unit (0.001 USD, 1.5 JPY) is refused, never
        rounded.
        """
        if not isinstance(currency, str):
            raise PriceError("the currency must be a string such as \"USD\"")
        places = exponent(currency.strip())
        if isinstance(amount, bool) or not isinstance(amount, (int, float, str, Decimal)):
            raise PriceError(f"`{amount!r}` is not an amount like 0.50")
        try:
            value = Decimal(repr(amount) if isinstance(amount, float) else str(amount).strip())
        except InvalidOperation:
            raise PriceError(f"`{amount}` is not an amount like 0.50") from None
        if not value.is_finite():
            raise PriceError(f"`{amount}` is not an amount like 0.50")
        minor = value.scaleb(places)
        if minor != minor.to_integral_value():
            raise PriceError(
                f"{currency.upper()} has {places} decimal places; `{amount}` has more"
            )
        minor_int = int(minor)
        if minor_int <= 0:
            raise PriceError(f"`{amount}` is not a positive amount")
        if minor_int > MAX_MINOR:
            raise PriceError(f"`{amount}` is more than the service accepts for one payment")
        return cls(minor=minor_int, currency=currency.strip().upper())

    @property
    def places(self) -> int:
        return exponent(self.currency)

    def major_text(self) -> str:
        """`0.19`, `500`."""
        if self.places == 0:
            return str(self.minor)
        per = 10**self.places
        return f"{self.minor // per}.{self.minor % per:0{self.places}d}"

    def major_number(self) -> int | float:
        """The amount in major units as a JSON number (0.19, 500), for display; the
        exact figure is `minor`."""
        value = Decimal(self.major_text())
        return int(value) if value == value.to_integral_value() else float(value)

    def display(self) -> str:
        """`0.19 USD`."""
        return f"{self.major_text()} {self.currency}"

    def meta(self) -> dict[str, Any]:
        """What tools/list shows in the tool's `_meta`: {"amount": 0.19, "currency": "USD"}."""
        return {"amount": self.major_number(), "currency": self.currency}


#: The attribute `price` sets on a tool function.
PRICE_ATTRIBUTE = "__walleot_price__"

F = TypeVar("F", bound=Callable[..., Any])


def price(amount: Any, currency: str = "USD") -> Callable[[F], F]:
    """Puts a price on a tool, in major units: `@price(0.50, "USD")`.

    Place it under `@mcp.tool()` (or above it: both orders work). The function is
    returned unchanged apart from the price it carries, so the tool's signature,
    schema and behaviour stay as written.
    """
    fixed = Price.of(amount, currency)

    def mark(fn: F) -> F:
        setattr(fn, PRICE_ATTRIBUTE, fixed)
        return fn

    return mark


def price_of(fn: Any) -> Price | None:
    found = getattr(fn, PRICE_ATTRIBUTE, None)
    return found if isinstance(found, Price) else None
