"""Luhn-valid card numbers (PANs) that the simulated services leak on purpose.

The simulator's services are careless the way real ones are: they log a card number or copy
the request body into a span attribute. The numbers are Luhn-valid, so a redactor that checks
the Luhn digit (as it should, to avoid masking order numbers) must still catch them.
"""

from __future__ import annotations

import random
from typing import Final

# Formats seen in real request bodies and log lines.
PAN_STYLES: Final = ("plain", "spaces", "dashes")

# Issuer prefixes of 16-digit brands: Visa 4, Mastercard 51-55 and 2221-2720.
_PREFIXES: Final = ("4", "4", "51", "52", "53", "54", "55", "2221", "2720")


def luhn_check_digit(partial: str) -> int:
    """The digit that makes ``partial`` + digit pass the Luhn check.

    >>> luhn_check_digit("411111111111111")
    1
    """
    total = 0
    # Doubling starts at the rightmost digit of the partial number (it sits left of the check).
    for position, char in enumerate(reversed(partial)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return (10 - total % 10) % 10


def is_luhn_valid(number: str) -> bool:
    """True when ``number`` (spaces and dashes allowed) is 12-19 digits passing the Luhn check.

    >>> is_luhn_valid("4111 1111 1111 1111"), is_luhn_valid("4111-1111-1111-1112")
    (True, False)
    """
    digits = number.replace(" ", "").replace("-", "")
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        return False
    return luhn_check_digit(digits[:-1]) == int(digits[-1])


def generate_pan(rng: random.Random) -> str:
    """A random Luhn-valid 16-digit PAN (digits only) from ``rng``.

    >>> pan = generate_pan(random.Random(1)); len(pan), is_luhn_valid(pan)
    (16, True)
    """
    prefix = rng.choice(_PREFIXES)
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(15 - len(prefix)))
    return body + str(luhn_check_digit(body))


def format_pan(pan: str, style: str) -> str:
    """``pan`` as written by a careless service: ``plain``, ``spaces`` or ``dashes``.

    >>> format_pan("4111111111111111", "spaces")
    '4111 1111 1111 1111'
    """
    if style == "plain":
        return pan
    groups = [pan[i : i + 4] for i in range(0, len(pan), 4)]
    if style == "spaces":
        return " ".join(groups)
    if style == "dashes":
        return "-".join(groups)
    raise ValueError(f"style must be one of {PAN_STYLES}, got {style!r}")
