"""Card numbers in a message's text (main/conversations/redact.py): what is
one, and how it is masked."""

import pytest

from main.conversations import wire
from main.conversations.redact import luhn, mask_card_numbers

# Test numbers the card networks publish, each passing the Luhn check.
VISA = "4111111111111111"
VISA_13 = "4222222222222"
MASTERCARD = "5555555555554444"
AMEX = "378282246310005"
DISCOVER = "6011111111111117"
MAESTRO_19 = "6759649826438453003"  # 19 digits that pass


def masked(text):
    return mask_card_numbers(text)[0]


@pytest.mark.parametrize("number", [VISA, VISA_13, MASTERCARD, AMEX, DISCOVER, MAESTRO_19, "79927398713"])
def test_luhn_passes_valid_numbers(number):
    assert luhn(number)


@pytest.mark.parametrize("number", ["4111111111111112", "378282246310006", "79927398710", "1234567812345678"])
def test_luhn_fails_others(number):
    assert not luhn(number)


@pytest.mark.parametrize(
    "text, expected",
    [
        (VISA, "************1111"),
        ("4111 1111 1111 1111", "**** **** **** 1111"),
        ("4111-1111-1111-1111", "****-****-****-1111"),
        ("3782 822463 10005", "**** ****** *0005"),  # Amex, 4-6-5
        ("3782-822463-10005", "****-******-*0005"),
        (VISA_13, "*********2222"),
        (MAESTRO_19, "***************3003"),
        ("6759 6498 2643 8453 003", "**** **** **** ***3 003"),  # the last four digits span a separator
    ],
)
def test_a_card_number_is_masked_but_for_its_last_four_digits(text, expected):
    assert mask_card_numbers(text) == (expected, 1)


def test_the_words_around_a_card_number_stay():
    text = f"My card is {VISA}, expiry 12/27. And 5555 5555 5555 4444!"
    assert mask_card_numbers(text) == ("My card is ************1111, expiry 12/27. And **** **** **** 4444!", 2)


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # fails Luhn
        "4111111111111112",
        "Order 12345 and order 987654321",  # order numbers
        "Call +44 20 7946 0958 or 020 7946 0958",  # phone numbers
        "+8613912345677",  # an international number that passes Luhn: the + says phone
        "0049 30 1234 5678 9",
        "2024-01-15 2024-02-20",  # dates, mixed separators
        "15/01/2024 10:30",
        "411111111111",  # 12 digits: too short
        "41111111111111111111",  # 20 digits: longer than any card
        "1234567890123456789012",  # a longer run of digits holds no card either
        "0000 0000 0000 0000",  # no card number starts with 0
        "ABC4111111111111111",  # glued to letters
        "4111111111111111abc",
        "x4111-1111-1111-1111",
        "id_4111111111111111",  # glued to an underscore
        "4111  1111  1111  1111",  # two spaces: not written as a card number
        "4111 - 1111 - 1111 - 1111",
        "4111 1111-1111 1111",  # mixed separators
        "41 11 11 11 11 11 11 11",  # groups too small
        "100 200 300 400 500",  # a list of numbers
        "\u0664\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661",  # not ASCII
    ],
)
def test_other_numbers_are_left_alone(text):
    assert mask_card_numbers(text) == (text, 0)


def test_a_card_number_between_other_digit_groups_is_found():
    # A security code after it, a year before it: the groups that make the card are masked.
    assert masked("4111 1111 1111 1111 123") == "**** **** **** 1111 123"
    assert masked("2027 4111 1111 1111 1111") == "2027 **** **** **** 1111"


def test_boundaries_are_punctuation_or_space():
    assert masked(f"({VISA})") == "(************1111)"
    assert masked(f"card:{VISA}.") == "card:************1111."
    assert masked(f"#{VISA}") == "#************1111"
    assert masked(f"{VISA}\n{MASTERCARD}") == "************1111\n************4444"


def test_the_mask_keeps_the_length():
    text = f"x {AMEX} y 4111-1111-1111-1111 z"
    assert len(masked(text)) == len(text)


def test_message_text_masks_and_says_so():
    assert wire.message_text(f"pay with {VISA}", 2000) == ("pay with ************1111", ["card_number_masked"])
    assert wire.message_text("no card here 12345", 2000) == ("no card here 12345", [])
    assert wire.NOTICES["card_number_masked"]


@pytest.mark.parametrize(
    "text, code",
    [(None, "bad_message"), (42, "bad_message"), (" ", "empty_message"), ("x" * 11, "too_long")]
    + [("a\x00b", "bad_message"), ("\ud800", "bad_message"), ("a\udfffb", "bad_message")],
)
def test_message_text_refuses_what_cannot_be_a_message(text, code):
    with pytest.raises(wire.Refused) as refused:
        wire.message_text(text, 10)
    assert refused.value.code == code and refused.value.detail
