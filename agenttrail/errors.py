"""One error root for agenttrail; the CLI and the API map these to one-line messages and JSON."""

from __future__ import annotations


class AgentTrailError(Exception):
    """Root of every error agenttrail raises on purpose."""

    code = "error"


class ConfigError(AgentTrailError):
    code = "config"


class TenantError(AgentTrailError):
    """Bad tenant id, unknown or disabled tenant."""

    code = "tenant"


class AuthError(AgentTrailError):
    """Missing, unknown, expired, revoked or out-of-scope credential."""

    code = "auth"


class NotFound(AgentTrailError):
    code = "not_found"


class BrokerError(AgentTrailError):
    """The Kafka broker could not be started, reached or used."""

    code = "broker"


class InvalidEvent(AgentTrailError):
    """An event that must not enter the trail; `reason` is a code from a closed list."""

    code = "invalid_event"

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason


class VerificationError(AgentTrailError):
    """A chain, signature or checkpoint that does not verify; `where` locates it."""

    code = "verification"

    def __init__(self, message: str, where: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.where = dict(where or {})
