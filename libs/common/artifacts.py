"""Artifact store rooted at ``KEFU_HOME``: ``datasets/``, ``models/``, ``engines/``, content-addressed.

A version is written to a temporary folder and renamed into place, so readers never see half an artifact and
storing the same content twice is a no-op.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

Kind = Literal["datasets", "models", "engines"]
#: An engine version's manifest (written by the builder, read by the Triton model and the gateway).
ENGINE_META = "kefu_engine.json"


def tree_sha256(root: Path) -> str:
    """Hash of a folder's relative file names and bytes, independent of timestamps and walk order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, kind: Kind, artifact_id: str) -> Path:
        if not artifact_id or "/" in artifact_id or artifact_id.startswith("."):
            raise ValueError(f"invalid artifact id {artifact_id!r}")
        return self.root / kind / artifact_id

    def uri(self, kind: Kind, artifact_id: str) -> str:
        return self.path(kind, artifact_id).resolve().as_uri()

    def exists(self, kind: Kind, artifact_id: str) -> bool:
        return self.path(kind, artifact_id).is_dir()

    def put_dir(self, kind: Kind, src: Path, artifact_id: str | None = None) -> str:
        """Copy ``src`` in as ``artifact_id`` (default: its content hash, ``sha-<16 hex>``); returns the id."""
        artifact_id = artifact_id or f"sha-{tree_sha256(src)[:16]}"
        dest = self.path(kind, artifact_id)
        if dest.is_dir():
            return artifact_id
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{artifact_id}.", dir=dest.parent))
        try:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
            os.rename(tmp, dest)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not dest.is_dir():  # lost a race with an identical writer is fine; anything else is not
                raise
        return artifact_id

    def resolve_uri(self, uri: str) -> Path:
        """Local path of a ``file://`` artifact URI (the only scheme of the single-machine store)."""
        if not uri.startswith("file://"):
            raise ValueError(f"unsupported artifact URI {uri!r}: only file:// is configured")
        return Path(uri.removeprefix("file://"))
