"""The one error the contracts raise."""

MAX_MESSAGE_CHARS = 1_000
"""A :class:`SchemaError`'s message is cut to this many characters: it quotes the
input, which may be as large as a payload, and it travels on as a dead letter's
reason."""


class SchemaError(ValueError):
    """Input does not match an event contract.

    ``field`` is the dotted path of the offending field (``""`` for the payload as a
    whole) and ``problem`` says what was wrong with it; both are cut short
    (:func:`clip`), so the message stays small whatever the input held.
    """

    def __init__(self, event_type: str, field: str, problem: str) -> None:
        self.event_type = clip(event_type, 64)
        self.field = clip(field, 200)
        self.problem = clip(problem, MAX_MESSAGE_CHARS)
        where = f"{self.event_type}.{self.field}" if self.field else self.event_type
        super().__init__(f"{where}: {self.problem}")


def clip(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and how much was
    left out, in at most ``limit`` characters."""
    if len(text) <= limit:
        return text
    tail = f"… ({len(text):,} characters in all)"
    return text[:max(0, limit - len(tail))] + tail[:limit]
