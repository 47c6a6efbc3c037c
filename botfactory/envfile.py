"""Write the git-ignored ``.env`` with generated secrets, once.

Run as ``python -m botfactory.envfile PATH``. An existing file keeps its
values; only missing secrets are appended, so a restart can still decrypt
what was stored with them.
"""

import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet


def _present(path: Path) -> set[str]:
    if not path.exists():
        return set()

    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, _value = line.partition("=")
        if sep and not name.lstrip().startswith("#"):
            names.add(name.strip())

    return names


def envfile_write(path: Path) -> list[str]:
    """Append the missing generated secrets to ``path``; return their names."""
    present = _present(path)
    generated = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode("ascii"),
    }
    missing = [name for name in generated if name not in present]
    if not missing:
        return []

    lines = [f"{name}={generated[name]}" for name in missing]
    header = (
        [] if path.exists() else ["# Generated secrets for local runs; keep private."]
    )
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n".join([*header, *lines]) + "\n")
    path.chmod(0o600)

    return missing


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".env")
    written = envfile_write(target)
    if written:
        sys.stdout.write(f"wrote {', '.join(written)} to {target.name}\n")
