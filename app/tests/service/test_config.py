"""The config schema and ``rvm-edge check-config`` (Ansible's ``validate:``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rvm_edge.cli import main
from rvm_edge.service.config import ConfigError, expand_path, load_config, read_secret

MINIMAL = "device: {id: rvm-001}\nmodels: {manifest: /opt/models/manifest.json}\nplatform: {base_url: https://p.example/api/v1}\n"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yml"
    p.write_text(text)
    return p


def test_defaults_then_file_then_environment(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "server: {port: 9000}\nstorage: {max_disk_mb: 100}\n")
    cfg = load_config(
        path, {"RVM_EDGE__SERVER__PORT": "9100", "RVM_EDGE__MODELS__SEGMENTATION__ENABLED": "false"}
    )
    assert cfg.server.port == 9100  # env beats file
    assert cfg.storage.max_disk_mb == 100  # file beats default
    assert cfg.platform.heartbeat_interval_s == 30 and cfg.server.bind == ("127.0.0.1",)  # defaults
    assert cfg.models.segmentation.enabled is False
    assert cfg.platform.api_key_file == "${CREDENTIALS_DIRECTORY}/api-key"


def test_every_error_is_reported_with_file_key_and_expectation(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "device: {id: rvm-001, nmae: typo}\n"
        "models: {manifest: /m.json, backend: tflite}\n"
        "server: {port: 70000, bind: localhost}\n"
        "platform: {base_url: https://p.example/api/v1, heartbeat_interval_s: fast}\n"
        "extra_section: 1\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, {"RVM_EDGE__STORAGE__MAX_DISK_MB": "lots"})
    text = str(err.value)
    for expected in (
        f"{path}: device.nmae: unknown key",
        f"{path}: models.backend: Input should be 'onnxruntime', 'openvino', 'tensorrt' or 'ultralytics'",
        f"{path}: server.port: Input should be less than or equal to 65535 (got 70000)",
        f"{path}: server.bind: expected an IP address",
        f"{path}: platform.heartbeat_interval_s: Input should be a valid number",
        f"{path}: extra_section: unknown key",
        "environment RVM_EDGE__STORAGE__MAX_DISK_MB: storage.max_disk_mb: Input should be a valid number",
    ):
        assert expected in text, expected
    assert len(err.value.issues) == 7


def test_plain_http_needs_an_explicit_key_and_prod_refuses_it(tmp_path: Path) -> None:
    http = MINIMAL.replace("https://", "http://")
    with pytest.raises(ConfigError, match="allow_insecure_http"):
        load_config(write(tmp_path, http), {})
    lab = http.replace("api/v1}", "api/v1, allow_insecure_http: true}")
    assert load_config(write(tmp_path, "profile: staging\n" + lab), {}).platform.allow_insecure_http
    with pytest.raises(ConfigError, match="profile 'prod' refuses"):
        load_config(write(tmp_path, "profile: prod\n" + lab), {})


def test_only_dev_may_run_without_a_platform(tmp_path: Path) -> None:
    offline = "device: {id: rvm-001}\nmodels: {manifest: /m.json}\n"
    with pytest.raises(ConfigError, match=r"needs platform\.base_url"):
        load_config(write(tmp_path, offline), {})
    assert load_config(write(tmp_path, "profile: dev\n" + offline), {}).platform.base_url is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("device: [1, 2\n", "not valid YAML: line 2"),
        ("- a list\n", "expected a mapping of sections"),
        ("source: {kind: folder}\n" + MINIMAL, "source.kind 'folder' needs source.path"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), {})


def test_check_config_prints_all_errors_and_needs_no_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    good = write(tmp_path, MINIMAL)
    assert main(["check-config", str(good)]) == 0  # neither the secrets nor the models exist
    assert "ok" in capsys.readouterr().out
    bad = write(tmp_path, MINIMAL + "server: {port: -1}\nlogging: {level: LOUD}\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith(f"rvm-edge: {bad}: server.port")
    assert main(["check-config", str(tmp_path / "missing.yml")]) == 2
    assert "missing.yml: file not found" in capsys.readouterr().err


def test_check_config_names_the_file_a_checked_copy_becomes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deploy's validate: checks Ansible's temporary copy; the refusal names the release's config
    file instead (by --as, or RVM_EDGE_CHECK_AS, which an older release simply ignores)."""
    copy = write(tmp_path, MINIMAL + "source: {kind: webcam}\n")
    release = "/opt/rvm-edge/releases/2.0.0/config.yml"
    assert main(["check-config", "--as", release, str(copy)]) == 2
    err = capsys.readouterr().err
    assert f"rvm-edge: {release}: source.kind" in err and str(copy) not in err
    monkeypatch.setenv("RVM_EDGE_CHECK_AS", release)
    assert main(["check-config", str(copy)]) == 2
    err = capsys.readouterr().err
    assert f"rvm-edge: {release}: source.kind" in err and str(copy) not in err
    monkeypatch.setenv("RVM_EDGE__SERVER__PORT", "-1")  # an environment key keeps its own origin
    assert main(["check-config", str(copy)]) == 2
    assert "environment RVM_EDGE__SERVER__PORT: server.port" in capsys.readouterr().err


def test_check_config_strict_checks_secrets_and_models(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    one_bottle_model: Path,
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    text = MINIMAL.replace("models: {manifest: /opt/models/manifest.json}\n", "")
    text += f"storage: {{data_dir: {tmp_path / 'data'}}}\n"
    text += f"models: {{manifest: {one_bottle_model}, segmentation: {{enabled: false}}}}\n"
    path = write(tmp_path, text)
    assert main(["check-config", "--strict", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"server.token_file: {creds}/api-token does not exist" in err
    assert f"platform.api_key_file: {creds}/api-key does not exist" in err
    (creds / "api-token").write_text("t" * 20)
    (creds / "api-key").write_text("rvm_" + "k" * 32)
    assert main(["check-config", "--strict", str(path)]) == 0
    one_bottle_model.parent.joinpath("fixed.onnx").write_bytes(b"corrupt")
    assert main(["check-config", "--strict", str(path)]) == 2
    assert "models.manifest" in capsys.readouterr().err


def test_secret_errors_name_the_file_never_the_value(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"CREDENTIALS_DIRECTORY\} is not set"):
        expand_path("${CREDENTIALS_DIRECTORY}/api-key", {})
    f = tmp_path / "api-key"
    f.write_text("two words")
    with pytest.raises(Exception, match="must hold one token") as err:
        read_secret(str(f), "platform.api_key_file")
    assert "two words" not in str(err.value)


def test_schema_lists_every_section_with_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["check-config", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert set(schema["properties"]) == {
        "profile", "device", "source", "models", "decision", "platform", "storage", "server", "logging"
    }  # fmt: skip
    platform = schema["$defs"]["PlatformConfig"]["properties"]
    assert (
        platform["heartbeat_interval_s"]["default"] == 30
        and platform["allow_insecure_http"]["default"] is False
    )


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("10.20.0.5", ("10.20.0.5",)),  # one string, as before
        ("[127.0.0.1, 10.20.0.5]", ("127.0.0.1", "10.20.0.5")),  # loopback + management address
        ("[127.0.0.1, 'fd00::5']", ("127.0.0.1", "fd00::5")),
    ],
)
def test_server_bind_takes_one_address_or_a_list(
    tmp_path: Path, bind: str, expected: tuple[str, ...]
) -> None:
    cfg = load_config(write(tmp_path, MINIMAL + f"server: {{bind: {bind}}}\n"), {})
    assert cfg.server.bind == expected
    env = load_config(write(tmp_path, MINIMAL), {"RVM_EDGE__SERVER__BIND": bind})
    assert env.server.bind == expected


@pytest.mark.parametrize(
    ("bind", "message"),
    [
        ("[127.0.0.1, mgmt.example]", "server.bind: expected an IP address (e.g. 127.0.0.1 or the management "
         "address), got 'mgmt.example' (entry 2 of 2)"),
        ("[]", "server.bind: expected at least one IP address, got an empty list"),
        ("[127.0.0.1, 127.0.0.1]", "server.bind: '127.0.0.1' is listed twice"),
        ("[0.0.0.0, 127.0.0.1]", "server.bind: a wildcard (0.0.0.0 or ::) already covers every address"),
        ("{a: 1}", "server.bind: Input should be a valid tuple"),
    ],
)  # fmt: skip
def test_a_bad_bind_address_names_the_key_and_the_entry(tmp_path: Path, bind: str, message: str) -> None:
    path = write(tmp_path, MINIMAL + f"server: {{bind: {bind}}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, {})
    assert f"{path}: {message}" in str(err.value)
