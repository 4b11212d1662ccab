"""A secret generated once on this machine and shared by the processes of one home (mode 0600).

Used when the operator has not set the secret (the hot node's token, the audit log's key): the first
process to need it writes a random value aside and hard-links it into place, which fails if the name
exists, so two processes starting at once agree on one value and nobody reads a half-written file.
"""

from __future__ import annotations

import os
import secrets
import uuid
from pathlib import Path


def read_or_create_secret(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32))
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(staged, path)
    except FileExistsError:
        pass  # another process won: its complete file is the secret
    finally:
        staged.unlink()
    return path.read_text().strip()
