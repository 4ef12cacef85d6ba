"""Channel-width scaling shared by the model zoo ([ours], docs/method.md, 'Models')."""


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded to the nearest integer, at least 1."""
    return max(1, int(round(channels * width)))
