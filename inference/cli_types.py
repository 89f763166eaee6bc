"""argparse types for the commands' numeric flags: a value the command cannot use is refused when
the flags are parsed (exit 2, one line naming the flag), not as a traceback minutes later."""

from __future__ import annotations

import argparse
import math


def _bounded(kind, low, high, what: str):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(v) or (low is not None and v < low) or (high is not None and v > high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v

    parse.__name__ = what  # argparse names the type in some messages
    return parse


non_negative_int = _bounded(int, 0, None, "an integer >= 0")
positive_int = _bounded(int, 1, None, "an integer >= 1")
non_negative_float = _bounded(float, 0.0, None, "a finite number >= 0")
port = _bounded(int, 1, 65535, "a TCP port in 1..65535")
