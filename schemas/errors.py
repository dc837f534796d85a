"""The one error the contracts raise."""


class SchemaError(ValueError):
    """Input does not match an event contract.

    ``field`` is the dotted path of the offending field (``""`` for the payload as a
    whole) and ``problem`` says what was wrong with it.
    """

    def __init__(self, event_type: str, field: str, problem: str) -> None:
        self.event_type = event_type
        self.field = field
        self.problem = problem
        where = f"{event_type}.{field}" if field else event_type
        super().__init__(f"{where}: {problem}")
