"""Agent-side registration: make an Ed25519 keypair locally, redeem an ``rk_…`` key, keep the key.

The private key never leaves the machine: it is written (PKCS#8 PEM, mode 0600) before the public
key is registered, and removed again if the registration is refused. Beside it, ``<key>.json``
holds the public identity (tenant, agent id, key id), which is no secret.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

from agenttrail import crypto
from agenttrail.config import Settings
from agenttrail.control.service import Registry
from agenttrail.errors import ConfigError

logger = logging.getLogger(__name__)

MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    tenant_id: str
    agent_id: str
    key_id: str
    key_path: str
    fingerprint: str

    def signing_key(self) -> crypto.SigningKey:
        return crypto.load_private_key(Path(self.key_path))


def machine_fingerprint() -> str:
    """SHA-256 over platform, node name, machine type and the OS machine id (when readable)."""
    machine_id = ""
    for path in MACHINE_ID_FILES:
        try:
            machine_id = path.read_text().strip()
            break
        except OSError:
            continue
    parts = (platform.system(), platform.node(), platform.machine(), machine_id)
    return "sha256:" + hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def identity_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".json")


def load_identity(key_path: Path) -> AgentIdentity:
    path = identity_path(Path(key_path))
    try:
        data = json.loads(path.read_text())
        return AgentIdentity(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read agent identity {path}: {exc}") from None


def register_agent_locally(settings: Settings, rk_secret: str, tenant_id: str, key_path: Path, *,
                           fingerprint: str | None = None, registry: Registry | None = None,
                           overwrite: bool = False) -> AgentIdentity:
    """Generate a keypair, store the private key (0600), register the public key; the identity."""
    key_path = Path(key_path)
    if key_path.exists() and not overwrite:
        raise ConfigError(f"{key_path} already exists; refusing to replace an agent's private key")
    fingerprint = fingerprint or machine_fingerprint()
    key = crypto.SigningKey.generate()
    crypto.save_private_key(key_path, key)
    own = registry is None
    reg = Registry.open(settings) if registry is None else registry
    try:
        agent_id, key_id = reg.register_agent(rk_secret, key.public_key, fingerprint, tenant_id=tenant_id)
    except BaseException:
        key_path.unlink(missing_ok=True)
        raise
    finally:
        if own:
            reg.close()
    identity = AgentIdentity(tenant_id, agent_id, key_id, str(key_path), fingerprint)
    identity_path(key_path).write_text(json.dumps(asdict(identity), indent=2) + "\n")
    logger.info("agent %s registered with key %s (private key in %s)", agent_id, key_id, key_path)
    return identity


def rotate_agent_locally(settings: Settings, key_path: Path, *, registry: Registry | None = None,
                         grace_seconds: int | None = None) -> AgentIdentity:
    """Replace the agent's key: new keypair, registered as the next generation, file replaced."""
    key_path = Path(key_path)
    current = load_identity(key_path)
    key = crypto.SigningKey.generate()
    staged = key_path.with_name(key_path.name + ".new")
    crypto.save_private_key(staged, key)
    own = registry is None
    reg = Registry.open(settings) if registry is None else registry
    try:
        key_id = reg.rotate_agent_key(current.tenant_id, current.agent_id, key.public_key,
                                      fingerprint=current.fingerprint, grace_seconds=grace_seconds)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    finally:
        if own:
            reg.close()
    staged.replace(key_path)
    identity = AgentIdentity(current.tenant_id, current.agent_id, key_id, str(key_path), current.fingerprint)
    identity_path(key_path).write_text(json.dumps(asdict(identity), indent=2) + "\n")
    return identity
