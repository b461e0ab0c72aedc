"""Durations: every spelling of the same time is the same number of seconds."""

import pytest

from desired import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600s", 3600),
        ("60m", 3600),
        ("1h", 3600),
        ("1h30m", 5400),
        ("2m5s", 125),
        (3600, 3600),
        ("300", 300),
    ],
)
def test_spellings_parse_to_seconds(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1x", "h", "-5s", "1.5h", "s1", "1h 30m", "PT1H"])
def test_malformed_durations_are_rejected_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match="such as 3600s"):
        parse_duration(text)


def test_a_boolean_is_not_a_duration() -> None:
    with pytest.raises(ValueError, match="boolean"):
        parse_duration(True)


@pytest.mark.parametrize(("seconds", "text"), [(3600, "3600s"), (300.0, "300s"), (1.5, "1.5s")])
def test_format_prints_the_api_spelling(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
