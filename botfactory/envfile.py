"""Write the git-ignored ``.env`` with generated secrets, once.

Run as ``python -m botfactory.envfile PATH``. An existing file keeps its
values; only missing secrets are appended, so a restart can still decrypt
what was stored with them.
"""

import os
import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet


def _present(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        name, sep, _value = line.partition("=")
        name = name.strip().removeprefix("export ").strip()
        if sep and not name.startswith("#"):
            names.add(name)

    return names


def envfile_write(path: Path) -> list[str]:
    """Append the missing generated secrets to ``path``; return their names.

    The file is created readable by its owner only, and made so when it
    gets a secret. Raises OSError when it cannot be read or written.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    present = _present(text)
    generated = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode("ascii"),
    }
    missing = [name for name in generated if name not in present]
    if not missing:
        return []

    lines = [f"{name}={generated[name]}" for name in missing]
    if not text:
        lines.insert(0, "# Generated secrets for local runs; keep private.")
    elif not text.endswith("\n"):
        lines.insert(0, "")
    # Created with mode 0600, so the secrets are never readable by others,
    # not even between the write and a later chmod.
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    path.chmod(0o600)

    return missing


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".env")
    written = envfile_write(target)
    if written:
        sys.stdout.write(f"wrote {', '.join(written)} to {target.name}\n")
