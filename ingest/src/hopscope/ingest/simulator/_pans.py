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
# What URL encoding makes of a card number typed with spaces: form encoding (+) and percent
# encoding (%20).
URL_PAN_STYLES: Final = ("plus", "percent")
_SEPARATORS: Final = {"spaces": " ", "dashes": "-", "plus": "+", "percent": "%20"}

# Issuer prefixes of 16-digit brands: Visa 4, Mastercard 51-55 and 2221-2720.
_PREFIXES: Final = ("4", "4", "51", "52", "53", "54", "55", "2221", "2720")
# Other lengths: Visa's old 13-digit cards; 19-digit Visa and UnionPay (62) cards. Every one of
# these 19-digit numbers is below 2**63, so it also fits a signed 64-bit integer attribute.
_PREFIXES_BY_LENGTH: Final = {13: ("4",), 16: _PREFIXES, 19: ("4", "62")}
PAN_LENGTHS: Final = tuple(sorted(_PREFIXES_BY_LENGTH))


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


def generate_pan(rng: random.Random, length: int = 16) -> str:
    """A random Luhn-valid PAN of ``length`` digits (13, 16 or 19; digits only) from ``rng``.

    >>> pan = generate_pan(random.Random(1)); len(pan), is_luhn_valid(pan)
    (16, True)
    >>> pan = generate_pan(random.Random(1), 19); len(pan), is_luhn_valid(pan)
    (19, True)
    """
    if length not in _PREFIXES_BY_LENGTH:
        raise ValueError(f"length must be one of {PAN_LENGTHS}, got {length}")
    prefix = rng.choice(_PREFIXES_BY_LENGTH[length])
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - 1 - len(prefix)))
    return body + str(luhn_check_digit(body))


def format_pan(pan: str, style: str) -> str:
    """``pan`` as written by a careless service: ``plain``, ``spaces`` or ``dashes``, or in a
    URL typed with spaces: ``plus`` (form encoding) or ``percent`` (``%20``). Groups of four.

    >>> format_pan("4111111111111111", "spaces")
    '4111 1111 1111 1111'
    >>> format_pan("4111111111111", "percent")
    '4111%201111%201111%201'
    """
    if style == "plain":
        return pan
    if style not in _SEPARATORS:
        raise ValueError(f"style must be one of {PAN_STYLES + URL_PAN_STYLES}, got {style!r}")
    return _SEPARATORS[style].join(pan[i : i + 4] for i in range(0, len(pan), 4))
