"""agenttrail: the audit trail for AI-agent fleets."""

__version__ = "0.1.0"
