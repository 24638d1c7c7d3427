"""Database ids and sequence numbers from untrusted input: one parser for
URL parts, query parameters and JSON fields."""

MAX_ID = 2**63 - 1  # PostgreSQL bigint


def parse_id(value, minimum=1):
    """`value` (an int, or a string of ASCII digits) as an integer from
    `minimum` to MAX_ID, else None. Booleans are not numbers here."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit() and len(value) <= 19):
            return None
        value = int(value)
    if not isinstance(value, int) or not minimum <= value <= MAX_ID:
        return None
    return value
