"""The words of a `gcloud run deploy` command line, read as gcloud reads them, with a path for each.

Owns the command-line grammar the gcloud seed shape needs: `--flag=value` and `--flag value`, switches
and their `--no-` forms, the one positional SERVICE, and gcloud's value syntaxes (`KEY=VALUE,...` dicts
and lists with the `^DELIM^` escape of `gcloud topic escaping`, durations such as `10m5s`, instance counts
or `default`). Where gcloud would keep the last of two contradictory flags, this reports both instead:
a seed never guesses; where gcloud refuses (a key given in two repeats, two flags of one group), so does
this. Which flags there are, and of which kind, is `emulator.seed_gcloud_flags`.
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from emulator.seed_gcloud_flags import (
    DICT_FLAGS,
    EXCLUSIVE,
    HINTS,
    LIST_FLAGS,
    NO_NEGATION,
    NOT_CONVERTED,
    REPEATED_FLAGS,
    SWITCHES,
    VALUE_FLAGS,
)
from emulator.seed_reader import Problems, item

__all__ = [
    "CommandLine",
    "parse_count",
    "parse_dict",
    "parse_duration",
    "parse_list",
    "read_words",
]

_NUMBER = r"(\d+(?:[.,]\d*)?|[.,]\d+)"
# gcloud's durations (`times.ParseDuration`): ISO 8601 with the P and T optional, any case, fractions allowed.
_DURATION = re.compile(
    rf"P?(?:{_NUMBER}W)?(?:{_NUMBER}D)?T?(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S|{_NUMBER}MS)?", re.I
)
_DURATION_UNITS = (7 * 86400, 86400, 3600, 60, 1, 0.001)


@dataclass
class CommandLine:
    """The parsed words: the SERVICE, each flag's values with the path of the word that gave them."""

    path: str
    problems: Problems
    service: str | None = None
    values: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    switches: dict[str, list[tuple[str, bool]]] = field(default_factory=lambda: defaultdict(list))

    def value(self, name: str) -> tuple[str, str] | None:
        """(value, path) of a flag given at most once; two different values are a problem."""
        given = self.values.get(name, [])
        if len({value for _, value in given}) > 1:
            spelled = ", ".join(f"{value!r} at {where}" for where, value in given)
            self.problems.add(
                given[-1][0], f"--{name} given more than once ({spelled}); a seed refuses to guess"
            )
        return given[-1][::-1] if given else None

    def pairs(self, name: str) -> dict[str, tuple[str, str]]:
        """KEY -> (VALUE, path) of a key=value flag, merged across its repeats as gcloud merges them; a key
        in two of them is refused, as gcloud refuses it ("cannot be specified multiple times")."""
        found: dict[str, tuple[str, str]] = {}
        for where, text in self.values.get(name, []):
            for key, value in parse_dict(text, where, self.problems).items():
                if key in found:
                    self.problems.add(
                        where,
                        f"--{name}: {key!r} cannot be specified multiple times "
                        f"({found[key][0]!r} at {found[key][1]}, {value!r} here)",
                    )
                else:
                    found[key] = (value, where)
        return found

    def items(self, name: str) -> list[str] | None:
        """The items of a list flag, merged across its repeats; an item given twice is refused, as gcloud
        refuses it. None: not given (an empty value is given, and clears)."""
        given = self.values.get(name)
        if not given:
            return None
        found: list[str] = []
        for where, text in given:
            for part in parse_list(text):
                if part in found:
                    self.problems.add(where, f"--{name}: {part!r} cannot be specified multiple times")
                else:
                    found.append(part)
        return found

    def switch(self, name: str) -> tuple[bool, str] | None:
        given = self.switches.get(name, [])
        if len({on for _, on in given}) > 1:
            spelled = ", ".join(f"--{'' if on else 'no-'}{name} at {where}" for where, on in given)
            self.problems.add(
                given[-1][0],
                f"--{name} given with opposite values ({spelled}); gcloud would keep the last, "
                "a seed refuses to guess",
            )
        return (given[-1][1], given[-1][0]) if given else None


_TAKES_VALUE = VALUE_FLAGS | DICT_FLAGS | LIST_FLAGS | REPEATED_FLAGS
_KNOWN = sorted(_TAKES_VALUE | SWITCHES | NOT_CONVERTED.keys())


def read_words(words: Sequence[str], start: int, path: str, problems: Problems) -> CommandLine:
    """Every word from `start` on: flags, their values, the SERVICE; unknown flags are problems."""
    line = CommandLine(path, problems)
    index = start
    while index < len(words):
        word, where = words[index], item(path, index)
        index += 1
        if not word.startswith("-"):
            if line.service is None:
                line.service = word
            else:
                problems.add(where, f"unexpected argument {word!r}: `gcloud run deploy` takes one SERVICE")
            continue
        if word == "-q":
            continue
        name, has_value, value = word.removeprefix("--").partition("=")
        if not word.startswith("--"):
            problems.add(where, f"unknown flag {word}")
        elif name in _TAKES_VALUE:
            if not has_value:
                if index < len(words) and not words[index].startswith("--"):
                    value, index = words[index], index + 1
                else:
                    problems.add(where, f"--{name} needs a value")
                    continue
            line.values[name].append((where, value))
        elif name in SWITCHES or name.removeprefix("no-") in SWITCHES - NO_NEGATION:
            if has_value:
                problems.add(where, f"--{name} takes no value")
            line.switches[name.removeprefix("no-")].append((where, not name.startswith("no-")))
        else:
            problems.add(where, _unknown(name))
    for group in EXCLUSIVE:
        if len(given := [flag for flag in group if flag in line.values]) > 1:
            first, *others = given
            problems.add(
                line.values[others[0]][0][0],
                f"at most one of --{' | --'.join(group)}: gcloud refuses --{first} with --{others[0]}",
            )
    return line


def _unknown(name: str) -> str:
    """Why a flag is not taken: what gcloud has it for, or the likely flag meant."""
    for known in (name, name.removeprefix("no-")):
        if known in NOT_CONVERTED:
            return NOT_CONVERTED[known]
    if name in HINTS:
        return f"unknown flag --{name}: {HINTS[name]}"
    close = difflib.get_close_matches(name, _KNOWN, n=1)
    return f"unknown flag --{name} of `gcloud run deploy`" + (
        f"; did you mean --{close[0]}?" if close else ""
    )


def _split(text: str) -> list[str]:
    """gcloud's list syntax: commas, or the delimiter named by a leading `^DELIM^`."""
    if text.startswith("^") and text.count("^") >= 2:
        delimiter, rest = text[1:].split("^", 1)
        return rest.split(delimiter) if rest else []
    return text.split(",") if text else []


def parse_list(text: str) -> list[str]:
    return [part for part in _split(text) if part]


def parse_dict(text: str, where: str, problems: Problems) -> dict[str, str]:
    """`KEY=VALUE,...` (a value may hold `=`); an empty item, a key without a value or a key given twice
    with different values is a problem."""
    found: dict[str, str] = {}
    for part in _split(text):
        key, has_value, value = part.partition("=")
        if not part:
            problems.add(where, f"{text!r} has an empty item (gcloud: Invalid flag value [])")
        elif not has_value:
            problems.add(where, f"{part!r} is not KEY=VALUE")
        elif key in found and found[key] != value:
            problems.add(where, f"{key} given twice with different values; a seed refuses to guess")
        else:
            found[key] = value
    return found


def parse_duration(text: str, where: str, problems: Problems) -> int | None:
    """Whole seconds of a gcloud duration: `300` (seconds), `300s`, `5m`, `1.5h`, `10m5s`, `PT5M`, `1d`."""
    if text.isdigit():
        seconds: float = int(text)
    elif (match := _DURATION.fullmatch(text)) is None or not any(match.groups()):
        problems.add(where, f"expected a duration such as 300, 300s, 5m, 1.5h or PT1H, got {text!r}")
        return None
    else:
        amounts = (float(group.replace(",", ".")) if group else 0.0 for group in match.groups())
        seconds = sum(amount * unit for amount, unit in zip(amounts, _DURATION_UNITS, strict=True))
    if seconds < 1:
        problems.add(where, f"must be at least 1s (gcloud's lower bound), got {text!r}")
        return None
    if seconds != int(seconds):
        problems.add(where, f"{text!r} is {seconds:g}s: Cloud Run's timeout is whole seconds")
        return None
    return int(seconds)


def parse_count(text: str, where: str, problems: Problems) -> int | None:
    """An instance count or `default` (None: the server's default)."""
    if text == "default":
        return None
    if text.isdigit():
        return int(text)
    problems.add(where, f"instance count must be a whole number or 'default', got {text!r}")
    return None
