"""The words of a `gcloud run deploy` command line, read as gcloud reads them, with a path for each.

Owns the command-line grammar the gcloud seed shape needs: `--flag=value` and `--flag value`, switches
and their `--no-` forms, the one positional SERVICE, and gcloud's value syntaxes (`KEY=VALUE,...` dicts
and lists with the `^DELIM^` escape of `gcloud topic escaping`, durations such as `10m5s`, instance counts
or `default`). Where gcloud would keep the last of two contradictory flags, this reports both instead:
a seed never guesses. Flag names and kinds follow `googlecloudsdk/command_lib/run/flags.py`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from emulator.seed_reader import Problems, item

__all__ = [
    "PRERELEASE_FLAGS",
    "SWITCHES",
    "VALUE_FLAGS",
    "CommandLine",
    "parse_count",
    "parse_dict",
    "parse_duration",
    "parse_list",
    "read_words",
]

# Flags of `gcloud run deploy` that take a value; a repeated one is merged or refused where it is read.
# fmt: off
VALUE_FLAGS = frozenset({
    "image", "platform", "project", "region", "revision-suffix", "description", "labels", "ingress",
    "timeout", "concurrency", "min-instances", "max-instances", "min", "max", "cpu", "memory", "port",
    "command", "args", "set-env-vars", "update-env-vars", "set-secrets", "update-secrets",
    "service-account", "execution-environment", "add-volume", "add-volume-mount",
    "add-cloudsql-instances", "set-cloudsql-instances", "vpc-connector", "vpc-egress",
})
# fmt: on
SWITCHES = frozenset(
    {"allow-unauthenticated", "async", "cpu-boost", "cpu-throttling", "quiet", "session-affinity"}
)
_NO_NEGATION = frozenset({"quiet"})  # gcloud's global --quiet has no --no-quiet
# Flags only `gcloud beta|alpha run deploy` has.
PRERELEASE_FLAGS = frozenset({"min", "max"})
# Spellings seen in the field that gcloud does not have, with what to write instead.
_HINTS = {
    "add-gcs-bucket": "a Cloud Storage volume is --add-volume=name=NAME,type=cloud-storage,bucket=BUCKET "
    "with --add-volume-mount=volume=NAME,mount-path=PATH",
    "gcs-fuse-flags": "gcsfuse flags go in --add-volume as mount-options=FLAG1;FLAG2 (semicolons)",
}
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.IGNORECASE)


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
        elif name in VALUE_FLAGS:
            if not has_value:
                if index < len(words) and not words[index].startswith("--"):
                    value, index = words[index], index + 1
                else:
                    problems.add(where, f"--{name} needs a value")
                    continue
            line.values[name].append((where, value))
        elif name in SWITCHES or name.removeprefix("no-") in SWITCHES - _NO_NEGATION:
            if has_value:
                problems.add(where, f"--{name} takes no value")
            line.switches[name.removeprefix("no-")].append((where, not name.startswith("no-")))
        else:
            hint = _HINTS.get(name)
            problems.add(
                where, f"unknown flag --{name}" + (f": {hint}" if hint else " of `gcloud run deploy`")
            )
    return line


def _split(text: str) -> list[str]:
    """gcloud's list syntax: commas, or the delimiter named by a leading `^DELIM^`."""
    if text.startswith("^") and text.count("^") >= 2:
        delimiter, rest = text[1:].split("^", 1)
        return rest.split(delimiter) if rest else []
    return text.split(",") if text else []


def parse_list(text: str) -> list[str]:
    return [part for part in _split(text) if part]


def parse_dict(text: str, where: str, problems: Problems) -> dict[str, str]:
    """`KEY=VALUE,...` (a value may hold `=`); a key without a value or given twice is a problem."""
    found: dict[str, str] = {}
    for part in parse_list(text):
        key, has_value, value = part.partition("=")
        if not has_value:
            problems.add(where, f"{part!r} is not KEY=VALUE")
        elif key in found and found[key] != value:
            problems.add(where, f"{key} given twice with different values; a seed refuses to guess")
        else:
            found[key] = value
    return found


def parse_duration(text: str, where: str, problems: Problems) -> int | None:
    """Seconds of a gcloud duration: `300`, `300s`, `5m`, `1h`, `10m5s`."""
    if text.isdigit():
        return int(text)
    match = _DURATION.fullmatch(text)
    if match is None or not any(match.groups()):
        problems.add(where, f"expected a duration such as 300, 300s, 5m or 1h, got {text!r}")
        return None
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def parse_count(text: str, where: str, problems: Problems) -> int | None:
    """An instance count or `default` (None: the server's default)."""
    if text == "default":
        return None
    if text.isdigit():
        return int(text)
    problems.add(where, f"instance count must be a whole number or 'default', got {text!r}")
    return None
