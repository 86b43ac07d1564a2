"""What the inference log's connection string asks for and why pymongo cannot use it, said without quoting
the string (it may hold a password). Standard library only: pymongo is the log's, not this module's."""

from __future__ import annotations

import errno
import os
import re
from urllib.parse import unquote_plus


def locked_key(uri: str) -> bool:
    """Whether the connection string names an encrypted client key and no password for it."""
    options = dict(re.findall(r"[?&;]([^=&;]+)=([^&;]*)", uri))
    named = {key.lower(): unquote_plus(value) for key, value in options.items()}
    if not named.get("tlscertificatekeyfile") or named.get("tlscertificatekeyfilepassword"):
        return False
    try:
        with open(named["tlscertificatekeyfile"], "rb") as handle:
            return b"ENCRYPTED" in handle.read(1 << 20)  # PKCS#8 "ENCRYPTED PRIVATE KEY" or PEM's "4,ENCRYPTED"
    except OSError:
        return False  # unreadable: pymongo says so


def why_unusable(exc: BaseException) -> str:
    """pymongo's reason, where it cannot quote the connection string (and so a password)."""
    if "PEM lib" in str(exc):
        return "its client key does not open: a wrong tlsCertificateKeyFilePassword, or not the certificate's key"
    if isinstance(exc, OSError):  # pymongo keeps the errno and drops the path ("The tlscafile file is not readable")
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ENOENT:
            reason += ": it does not exist"
        elif exc.errno == errno.EACCES:  # the image runs as uid 65532: a mounted root-only key file lands here
            reason += f": permission denied to uid {os.geteuid()}, the user this server runs as"
        return f"a file it names cannot be read ({reason})"
    return f"pymongo refuses it ({type(exc).__name__}; its message is not shown, as it may quote the string)"
