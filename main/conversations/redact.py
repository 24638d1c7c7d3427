"""Payment card numbers in a message's text, masked but for their last four
digits before the message is stored or sent to anyone (docs/protocol.md,
"Card numbers"): a chat is no place to keep them, and whoever reads the
chat later should not find them there.

A card number here is 13 to 19 ASCII digits, the first of them 1 to 9,
passing the Luhn check, written either together or in groups separated by
single spaces or by single dashes (one kind throughout), the first group of
4 digits and the others of 3 to 6 (4-4-4-4, 4-6-5, 4-4-4-4-3...). A number
glued to a letter, a digit, an underscore or a `+` (a phone number) is not
one; within a longer grouped number, the groups that make one are masked."""

import re

MIN_DIGITS, MAX_DIGITS = 13, 19
KEPT_DIGITS = 4
MASK = "*"
# Digits, or digit groups joined by single spaces or dashes, that stand
# apart from the words and numbers around them.
NUMBER = re.compile(r"(?<![\w+])[0-9]+(?:[ -][0-9]+)*(?!\w)")
GROUP = re.compile(r"[0-9]+")
FIRST_GROUP_DIGITS = 4
OTHER_GROUP_DIGITS = range(3, 7)


def luhn(digits):
    """Whether a string of digits passes the Luhn check."""
    total = 0
    for n, digit in enumerate(reversed(digits)):
        value = int(digit)
        if n % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def mask_card_numbers(text):
    """`text` with every card number masked (each digit but the last four
    becomes `*`, separators kept), and how many were."""
    masked = list(text)
    found = 0
    for number in NUMBER.finditer(text):
        for start, end in _cards(number):
            found += 1
            digits = [i for i in range(start, end) if text[i].isdigit()]
            for i in digits[:-KEPT_DIGITS]:
                masked[i] = MASK
    return ("".join(masked) if found else text), found


def _cards(number):
    """The (start, end) spans of the card numbers in one run of digit groups."""
    groups = [(g.start(), g.end()) for g in GROUP.finditer(number.string, number.start(), number.end())]
    text = number.string
    i = 0
    while i < len(groups):
        for j in _windows(groups, i, text):
            start, end = groups[i][0], groups[j][1]
            digits = "".join(text[a:b] for a, b in groups[i : j + 1])
            if luhn(digits):
                yield start, end
                i = j + 1
                break
        else:
            i += 1


def _windows(groups, i, text):
    """The last group of each run of groups from group `i` that is written
    as a card number is, the longest first."""
    ends = []
    digits = 0
    for j in range(i, len(groups)):
        start, end = groups[j]
        digits += end - start
        if digits > MAX_DIGITS:
            break
        if j > i:
            shaped = (groups[i][1] - groups[i][0] == FIRST_GROUP_DIGITS) and end - start in OTHER_GROUP_DIGITS
            one_separator = text[groups[j - 1][1] : start] == text[groups[i][1] : groups[i + 1][0]]
            if not (shaped and one_separator):
                break
        if digits >= MIN_DIGITS and text[groups[i][0]] != "0":
            ends.append(j)
    return reversed(ends)
