import base64
import stat
from pathlib import Path

from botfactory.envfile import envfile_write


def _values(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()

    return dict(
        line.split("=", 1) for line in lines if "=" in line and not line.startswith("#")
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_file_gets_both_secrets_readable_by_its_owner_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / ".env"

    written = envfile_write(path)

    values = _values(path)
    assert written == ["SECRET_KEY", "FIELD_ENCRYPTION_KEYS"]
    assert sorted(values) == ["FIELD_ENCRYPTION_KEYS", "SECRET_KEY"]
    assert len(values["SECRET_KEY"]) >= 50
    assert len(base64.urlsafe_b64decode(values["FIELD_ENCRYPTION_KEYS"])) == 32
    assert _mode(path) == 0o600


def test_only_missing_secrets_are_appended_and_existing_values_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / ".env"
    # No final newline: the appended line must still start on its own line.
    path.write_text("# mine\nDEBUG=1\nexport SECRET_KEY=keep-me", encoding="utf-8")
    path.chmod(0o644)

    written = envfile_write(path)

    lines = path.read_text(encoding="utf-8").splitlines()
    assert written == ["FIELD_ENCRYPTION_KEYS"]
    assert lines[:3] == ["# mine", "DEBUG=1", "export SECRET_KEY=keep-me"]
    assert len(lines) == 4
    assert lines[3].startswith("FIELD_ENCRYPTION_KEYS=")
    assert _mode(path) == 0o600


def test_complete_file_is_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    envfile_write(path)
    before = path.read_bytes()

    written = envfile_write(path)

    assert written == []
    assert path.read_bytes() == before
    assert _mode(path) == 0o600
