"""The card-number masking rule, computed independently of the code under test (shared by
the masking unit tests and the PAN audit)."""

from __future__ import annotations

import re


def expected_mask(text: str) -> str:
    """``text`` (one card number, any format) masked to first-6/last-4, computed here from the
    rule rather than by the code under test: escapes are separators, not digits."""
    parts = re.findall(r"%20|%2[Dd]|.", text)
    digit_count = sum(part.isdigit() for part in parts)
    out, seen = [], 0
    for part in parts:
        if part.isdigit():
            out.append(part if seen < 6 or seen >= digit_count - 4 else "*")
            seen += 1
        else:
            out.append(part)
    return "".join(out)
