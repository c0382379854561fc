"""TODO docstring"""


from __future__ import annotations


def say(message: str) -> None:
    print(message, flush=True)
