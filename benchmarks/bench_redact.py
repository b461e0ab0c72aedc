"""Cost of redaction on 32 KiB values, hostile shapes against a plain one of the same size (the baseline).

Every env value of every planned service passes through `redact_text`; a pattern that backtracks turns a
plan into minutes. Prints CPU ms per call and the ratio to the plain value, measured in the same run.
Run: .venv/bin/python benchmarks/bench_redact.py
"""

from __future__ import annotations

import time

from desired.redaction import redact_text

SIZE = 32_000
SHAPES = {
    "plain": "a" * SIZE,
    "scheme prefixes": "a://" * (SIZE // 4),
    "urls in queries": "a://u:p@h?" * (SIZE // 10),
    "userinfo-like": "x:y@" * (SIZE // 4),
    "dsn-like words": " a:b@c(" * (SIZE // 7),
    "secret params": "?key=" * (SIZE // 5),
}


def _cpu_ms(text: str, repeat: int = 20) -> float:
    started = time.process_time()
    for _ in range(repeat):
        redact_text(text)
    return (time.process_time() - started) / repeat * 1000


def main() -> None:
    baseline = _cpu_ms(SHAPES["plain"])
    print(f"{'shape':<16} {'CPU ms/call':>12} {'vs plain':>9}")
    for name, text in SHAPES.items():
        cost = _cpu_ms(text)
        print(f"{name:<16} {cost:>12.2f} {cost / baseline:>8.1f}x")


if __name__ == "__main__":
    main()
