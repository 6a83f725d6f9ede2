"""Which scopes a key needs for a route: a pure, fail-closed check.

A route declares one required scope (or none, for the public routes). A key grants it when it
holds that scope exactly, the wildcard ``*``, or a family wildcard such as ``lessons:*`` for
``lessons:read``. An empty scope list grants nothing; an unknown scope grants nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from agenttrail.control.records import SCOPES

WILDCARD = "*"

# Family wildcards the control plane knows: "<family>:*" grants "<family>:<anything>".
FAMILY_WILDCARDS = frozenset(s for s in SCOPES if s.endswith(":*"))


def grants(held: Iterable[str], required: str) -> bool:
    """True when the scopes ``held`` allow an action that requires ``required``."""
    if required not in SCOPES:
        return False
    for scope in held:
        if scope not in SCOPES:
            continue  # fail closed on anything we do not know
        if scope in (WILDCARD, required):
            return True
        if scope in FAMILY_WILDCARDS and required.startswith(scope[:-1]):
            return True
    return False
