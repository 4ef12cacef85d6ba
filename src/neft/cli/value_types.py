"""Flag value parsers (argparse ``type=``): each turns a flag's text into its value, or raises
``argparse.ArgumentTypeError`` with a one-line message that names the expected form."""

from __future__ import annotations

import argparse


def json_object(text: str) -> dict:
    """``--model-args`` value: a JSON object."""
    import json

    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({error}); write e.g. '{{\"depth\": 4}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object; write e.g. '{{\"depth\": 4}}'")
    return value


def number_list(text: str, what: str) -> list[float]:
    """A flag's value as one number or a comma list of numbers; ``what`` completes the error message."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return values


def times(text: str) -> list[float]:
    """``--drift-times`` value: one time in seconds or a comma list of times."""
    return number_list(text, "a time or a comma list of times in seconds like 1,3600,86400")


def fractions(text: str) -> list[float]:
    """``--write-verify`` value: one fraction or a comma list of fractions (a sweep)."""
    return number_list(text, "a fraction or a comma list of fractions like 0,0.01,0.05")


def chips_per_pass(text: str) -> str | int:
    """``--chips-per-pass`` value: ``auto`` or a positive integer."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is neither 'auto' nor a positive integer")
    return value
