"""Ed25519 key pairs in PEM files: generated once, read by whoever signs or verifies.

The gateway's local token issuer and the ledger's audit checkpoints both sign
with Ed25519. A pair lives as two files: the private key (PKCS#8, mode 0600,
never overwritten) and its public half (SubjectPublicKeyInfo) beside it, for
the verifiers. A key provisioned from elsewhere, such as a Kubernetes Secret,
is only ever read.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def ensure_private_key(path: Path, public_path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The private key at ``path``, generating the pair on first use; True when generated.

    Idempotent, also across processes starting at once: the private key is
    created with O_EXCL, so of two first starts one writes it and both use it.
    The public half is (re)written to ``public_path`` when missing.
    """
    generated = False
    if path.exists():
        key = load_private_key(path)
    else:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = load_private_key(path)
        else:
            with os.fdopen(fd, "wb") as file:
                file.write(pem)
            generated = True
    if not public_path.exists():
        public_path.write_bytes(public_pem(key.public_key()))
    return key, generated


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key from a PEM file; ValueError naming the file otherwise."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key from a PEM file; ValueError naming the file otherwise."""
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} does not hold an Ed25519 public key")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    """``key`` as SubjectPublicKeyInfo PEM."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
