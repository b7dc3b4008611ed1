"""Errors raised while evaluating rules: they always fail closed."""


class MissingFact(Exception):
    """A guard read a fact the engine could not determine this tick."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"fact '{name}' is missing (the engine could not read it)")


class GuardError(Exception):
    """A guard could not be evaluated; the transition does not fire and the bot halts."""

    def __init__(self, guard: str, cause: BaseException):
        self.guard = guard
        self.cause = cause
        super().__init__(f"guard '{guard}' failed: {cause}")
