"""The one error hierarchy. Every error carries a message written for the user and its exit code.

Exit codes (documented in the README, mapped to the process exit status in ``cli.py`` alone):
0 ok, 1 operational error, 2 usage or bad spec/lock, 3 verification failed, 4 health check failed.
"""

from __future__ import annotations

from airpack.textsafe import escape

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_VERIFY = 3
EXIT_HEALTH = 4


class AirpackError(Exception):
    """Base class: ``str(err)`` is one line that says what went wrong, where, and what to do next.

    Messages often quote names from a bundle, volume, spec or lock: every control and non-printable character
    is escaped here (``airpack.textsafe``), where text enters a message, so no caller can forget it."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        message = escape(message)
        hint = escape(hint) if hint is not None else None
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(AirpackError):
    """Bad command-line input that the CLI framework cannot catch (e.g. a missing file)."""

    exit_code = EXIT_USAGE


class SpecError(AirpackError):
    """The spec (``airpack.yaml``) is invalid: the message names the key path."""

    exit_code = EXIT_USAGE


class LockError(AirpackError):
    """The lock is missing, malformed or no longer matches the spec or its sources."""

    exit_code = EXIT_USAGE


class SourceError(AirpackError):
    """A model or image source cannot give what the spec asks for (missing repo, revision, file)."""

    exit_code = EXIT_USAGE


class CompatibilityError(AirpackError):
    """The locked model will not fit or run on the declared target (planner checks)."""

    exit_code = EXIT_USAGE


class FetchError(AirpackError):
    """Fetching bytes failed or the bytes did not match what was locked."""


class BuildError(AirpackError):
    """Writing the bundle failed."""


class KeyFileError(AirpackError):
    """A signing or verification key cannot be read or used."""

    exit_code = EXIT_USAGE


class SignError(AirpackError):
    """Signing refused: the bundle is not internally consistent or the key is unusable."""


class AlreadySignedError(SignError):
    """The bundle already carries a signature and ``--force`` was not given: the user's choice to make."""

    exit_code = EXIT_USAGE


class VerificationError(AirpackError):
    """The bundle is not what was signed. ``problems`` lists every problem found, not just the first."""

    exit_code = EXIT_VERIFY

    def __init__(self, message: str, *, problems: tuple[object, ...] = (), hint: str | None = None,
                 sums_sha256: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems
        self.sums_sha256 = sums_sha256  # of the SHA256SUMS bytes verification read, when it got that far


class InstallError(AirpackError):
    """Installing on the host failed before the service could be started."""


class RefusedError(InstallError):
    """Refused because of what the user asked (a downgrade, a prefix that holds another bundle, a rollback with
    nothing to roll back to, a flag that does not apply): a usage error, exit 2, not an operational one."""

    exit_code = EXIT_USAGE


class HealthError(AirpackError):
    """The service did not become healthy or failed its smoke test."""

    exit_code = EXIT_HEALTH
