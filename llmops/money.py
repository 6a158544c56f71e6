"""Money as people read it, for pages and exports (the API keeps its fixed-precision decimal strings)."""

from decimal import Decimal


def money_str(amount: Decimal) -> str:
    """`amount` in plain notation, trailing zeros trimmed but at least cents: 0.00, 1.50, 0.000123.

    Never an exponent, whatever the database's sum came back as (`0E-10` is 0.00). Nothing is
    rounded: a run that cost 0.0000012 USD shows as such, not as 0.00.
    """
    if not amount.is_finite():
        raise ValueError(f"Not an amount of money: {amount}")
    if amount.is_zero():
        return "0.00"  # also -0 and 0E-10
    whole, _, fraction = f"{amount:f}".partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"
