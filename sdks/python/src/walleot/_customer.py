"""The customer reference a payment names, which mandates are granted for.

A server that authenticates its users names each one (`identify`); a stdio server
serves one user, its installation's, whose reference is kept in a file so that it
stays the same from one run to the next.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import Any


def is_valid(reference: Any) -> bool:
    """What the service accepts: 1 to 255 printable ASCII characters."""
    return (
        isinstance(reference, str)
        and 1 <= len(reference) <= 255
        and all(" " <= c <= "~" for c in reference)
    )


def of_subject(subject: str) -> str:
    """A subject as a customer reference: itself where the service accepts it, else its
    digest (a subject of other characters stays one stable reference)."""
    if is_valid(subject):
        return subject
    return "sha256:" + hashlib.sha256(subject.encode("utf-8")).hexdigest()


def installation_file() -> Path | None:
    """Where the installation's reference is kept: `$WALLEOT_STATE_DIR`, else
    `$XDG_STATE_HOME/walleot`, else `~/.local/state/walleot`; the file `customer` there."""
    state = os.environ.get("WALLEOT_STATE_DIR")
    xdg = os.environ.get("XDG_STATE_HOME")
    if state:
        directory = Path(state)
    elif xdg:
        directory = Path(xdg) / "walleot"
    else:
        try:
            directory = Path.home() / ".local" / "state" / "walleot"
        except RuntimeError:  # no home directory to keep it in
            return None
    return directory / "customer"


def _read(file: Path) -> str | None:
    try:
        kept = file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return kept if is_valid(kept) else None


def installation_customer() -> str | None:
    """This installation's reference (`inst_` and 24 random characters), made on first
    use and read back afterwards; None where no file can be kept."""
    file = installation_file()
    if file is None:
        return None
    kept = _read(file)
    if kept is not None:
        return kept
    fresh = "inst_" + secrets.token_urlsafe(18)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        # Made once: a process that lost the race reads the winner's reference.
        with open(file, "x", encoding="utf-8") as out:
            out.write(fresh)
    except FileExistsError:
        return _read(file)
    except OSError:
        return None
    return fresh


def resolve(customer: str | None) -> str | None:
    """The reference of a stdio server's one user: `customer` given in code, else
    `WALLEOT_CUSTOMER`, else the installation's own; invalid ones are passed over."""
    for reference in (customer, os.environ.get("WALLEOT_CUSTOMER")):
        if is_valid(reference):
            return reference
    return installation_customer()
