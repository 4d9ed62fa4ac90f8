"""A session the backup server drops before it begins (sshd's MaxStartups throttling when a batch of
devices backs up at once) is tried again, a bounded number of times; any other failure is not. restic
is a stand-in script here that fails the way restic does (its stderr) a given number of times."""

from __future__ import annotations

from pathlib import Path

import pytest

from rvm_backup import restic as restic_module
from rvm_backup.config import Config
from rvm_backup.restic import SESSION_ATTEMPTS, Restic, session_dropped

DROPPED = (
    "Fatal: create repository at sftp:rb-rvm-scale-04@10.89.0.2:/repo failed: "
    "unable to start the sftp session, error: read |0: file already closed"
)


def fake_restic(tmp_path: Path, failures: int, stderr: str) -> Path:
    """restic that fails ``failures`` times with ``stderr`` (exit 1), then succeeds; counts its runs."""
    script = tmp_path / "restic"
    script.write_text(
        "#!/bin/sh\n"
        f'n=$(cat "{tmp_path}/runs" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "{tmp_path}/runs"\n'
        f"if [ \"$n\" -le {failures} ]; then echo '{stderr}' >&2; exit 1; fi\n"
        "echo ok\n"
    )
    script.chmod(0o755)
    return script


def config(tmp_path: Path, restic: Path) -> Config:
    return Config(
        path=str(tmp_path / "config.json"), repository="sftp:rb-x@10.0.0.2:/repo",
        password_file=str(tmp_path / "password"), host="rvm-x", tags=("rvm-edge",), sqlite=(), paths=(),
        excludes=(), retention={}, check_subsets=1, textfile_dir=str(tmp_path), state_dir=str(tmp_path),
        restic=str(restic), sftp_command="", timeout_s=30,
    )  # fmt: skip


def runs(tmp_path: Path) -> int:
    return int((tmp_path / "runs").read_text())


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restic_module, "SESSION_BACKOFF_S", 0.0)


def test_a_dropped_session_is_tried_again_until_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = Restic(config(tmp_path, fake_restic(tmp_path, 2, DROPPED))).call(["init"])
    assert result.returncode == 0 and result.stdout.strip() == "ok"
    assert runs(tmp_path) == 3
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 2 and "restic init: the sftp session was dropped" in said[0] and "(3 of 4)" in said[1]


def test_the_retries_are_bounded_and_the_last_failure_is_reported(tmp_path: Path) -> None:
    result = Restic(config(tmp_path, fake_restic(tmp_path, 99, DROPPED))).call(["init"])
    assert result.returncode == 1 and "unable to start the sftp session" in result.stderr
    assert runs(tmp_path) == SESSION_ATTEMPTS


def test_any_other_failure_is_not_tried_again(tmp_path: Path) -> None:
    wrong = "Fatal: wrong password or no key found"
    result = Restic(config(tmp_path, fake_restic(tmp_path, 5, wrong))).call(["cat", "config"])
    assert result.returncode == 1 and runs(tmp_path) == 1


def test_what_counts_as_a_dropped_session() -> None:
    assert session_dropped(DROPPED)
    assert session_dropped("kex_exchange_identification: Connection closed by remote host")
    assert not session_dropped("Fatal: repository is already locked by PID 12")
