"""Exception taxonomy, named for what happens next (exit codes follow docs/design.md §3)."""


class LongDocVQAError(Exception):
    """Base class; `exit_code` is what the CLI returns."""

    exit_code = 1


class RecipeError(LongDocVQAError):
    """The recipe or the command line is wrong: fix the input and run again (exit 2)."""

    exit_code = 2


class StageError(LongDocVQAError):
    """A stage could not finish (error budget exceeded, inconsistent run directory)."""


class RunDirBusy(StageError):
    """Another build holds the run directory's lock (exit 1): wait for it, or use another --out."""


class ExternalServiceError(LongDocVQAError):
    """A model endpoint or the Hub failed beyond the retry budget."""


class RejectedInput(LongDocVQAError):
    """One input item is unusable; it is recorded in rejects.jsonl and the build goes on."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def one_line(exc: BaseException) -> str:
    """An exception as one line of at most 300 characters, its type first: the detail of a reject line."""
    text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:300]
