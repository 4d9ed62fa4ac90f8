"""The service configuration: one YAML file, a typed schema, layered defaults < file < environment.

Why a strict schema: the file is rendered by Ansible for a whole fleet, so a typo in a key must
stop the deploy (``rvm-edge check-config`` runs as the template's ``validate:``) instead of being
silently ignored on hundreds of devices. Every error names the file, the key path and what was
expected, and all errors are reported at once.

Secrets are never in this file: ``platform.api_key_file`` and ``server.token_file`` name files
(the systemd credentials directory by default) that are read only when the service starts.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_CONFIG_PATH = Path("/etc/rvm-edge/config.yml")
ENV_PREFIX = "RVM_EDGE__"
CREDENTIALS_VAR = "CREDENTIALS_DIRECTORY"


class _Section(BaseModel):
    """Unknown keys are errors; sections are immutable once loaded (a reload builds a new one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceConfig(_Section):
    id: str = Field(min_length=1, max_length=100, description="hardware_id sent to the platform")
    name: str = Field(default="", max_length=255, description="display name; defaults to the id")
    zerotier_address: str | None = Field(
        default=None, description="address reported as tailscale_ip; None = first zt* interface"
    )
    timezone: str | None = Field(default=None, max_length=50)


class SourceConfig(_Section):
    kind: Literal["folder", "camera", "video", "gstreamer"] = "camera"
    path: str | None = None
    device: str | None = "0"
    pipeline: str | None = None
    loop: bool = False
    fps: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _needs_its_field(self) -> SourceConfig:
        need = {"folder": "path", "video": "path", "camera": "device", "gstreamer": "pipeline"}[self.kind]
        if not getattr(self, need):
            raise ValueError(f"source.kind {self.kind!r} needs source.{need}")
        return self

    def spec(self) -> str:
        """The string :func:`rvm_edge.sources.open_source` understands."""
        if self.kind in ("folder", "video"):
            return str(self.path)
        if self.kind == "gstreamer":
            return str(self.pipeline)
        return str(self.device)


class SegmentationConfig(_Section):
    enabled: bool = True
    manifest: Path | None = Field(default=None, description="SAM2 manifest; default: sam2/ beside models")
    backend: Literal["onnxruntime", "openvino"] = "onnxruntime"
    precision: Literal["f32", "bf16", "f16"] = "f32"
    threads: int = Field(
        default=0,
        ge=0,
        description="SAM2 inference threads; 0 = one per core: a mask sooner, while one thread would "
        "save only ~10 % of SAM2's CPU (issue 17)",
    )


class ModelsConfig(_Section):
    manifest: Path
    model: str | None = Field(
        default=None,
        min_length=1,
        description="the detector variant to run, by its name in the manifest; default: the first detector "
        "listed. The lab's INT8 variant costs ~40 % less CPU per frame than FP32 (issue 17)",
    )
    backend: Literal["onnxruntime", "openvino", "tensorrt", "ultralytics"] = "onnxruntime"
    engine: Path | None = None
    engines: dict[str, Path] = Field(
        default_factory=dict,
        description="model name -> engine file built on this device (Ansible's model_engines role); each is "
        "checked against its key.json and the manifest at start, a mismatch stops the service",
    )
    precision: Literal["auto", "f32", "bf16", "f16"] = Field(
        default="auto",
        description="OpenVINO inference precision of the detector. auto: bf16 on a CPU with bf16 "
        "instructions (avx512_bf16 or amx_bf16), f32 on any other; the lab detector's accuracy is the "
        "same at bf16 and its CPU per frame about a third lower (issue 17)",
    )
    threads: int = Field(
        default=1,
        ge=0,
        description="detector inference threads; 0 = one per core. One thread does a frame's work with "
        "a sixth to a third less CPU and ~20x fewer wake-ups than two at a camera's rate (issue 17); "
        "more only shorten each inference, which matters at high frame rates",
    )
    allow_spinning: bool = Field(
        default=False,
        description="let ONNX Runtime's threads busy-wait between runs: a few ms faster per frame at "
        "high rates, but at camera rates it burns a core's share doing nothing (issue 17)",
    )
    conf: float = Field(default=0.25, ge=0, le=1)
    iou: float = Field(default=0.7, ge=0, le=1)
    cache_dir: Path | None = None
    segmentation: SegmentationConfig = SegmentationConfig()

    def sam2_manifest(self) -> Path:
        return self.segmentation.manifest or self.manifest.parent / "sam2" / "manifest.json"


class DecisionSection(_Section):
    """Maps to :class:`rvm_edge.decision.DecisionConfig`, plus what the service does with a verdict."""

    materials: dict[str, Literal["plastic", "metal", "glass", "reject"]] = Field(
        default_factory=lambda: {"bottle": "plastic", "can": "metal", "other": "reject"}
    )
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    class_min_confidence: dict[str, float] = Field(default_factory=dict)
    presence_threshold: float = Field(default=0.25, ge=0, le=1)
    edge_margin_px: int = Field(default=2, ge=0)
    min_area_fraction: float = Field(default=0.005, ge=0, le=1)
    max_area_fraction: float = Field(default=0.9, ge=0, le=1)
    record_empty: bool = Field(default=False, description="also record frames with nothing in view")
    points: dict[str, int] = Field(default_factory=lambda: {"plastic": 10, "metal": 10, "glass": 10})
    weight_kg: dict[str, float] = Field(
        default_factory=lambda: {"plastic": 0.025, "metal": 0.015, "glass": 0.3}
    )

    @model_validator(mode="after")
    def _areas(self) -> DecisionSection:
        if self.min_area_fraction >= self.max_area_fraction:
            raise ValueError("decision.min_area_fraction must be below decision.max_area_fraction")
        return self

    def to_runtime(self) -> Any:
        from rvm_edge.decision import DecisionConfig

        return DecisionConfig(
            materials=dict(self.materials),
            min_confidence=self.min_confidence,
            class_min_confidence=dict(self.class_min_confidence),
            presence_threshold=self.presence_threshold,
            edge_margin_px=self.edge_margin_px,
            min_area_fraction=self.min_area_fraction,
            max_area_fraction=self.max_area_fraction,
        )


class PlatformConfig(_Section):
    base_url: str | None = Field(default=None, description="e.g. https://platform.example/api/v1")
    api_key_file: str = "${CREDENTIALS_DIRECTORY}/api-key"
    ca_bundle: Path | None = None
    allow_insecure_http: bool = False
    heartbeat_interval_s: float = Field(default=30.0, ge=1, le=3600)
    handshake_interval_s: float = Field(default=900.0, ge=10, description="re-handshake to refresh policy")
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    connect_timeout_s: float = Field(default=5.0, gt=0, le=60)
    backoff_initial_s: float = Field(default=1.0, gt=0)
    # The link is back at most max(backoff_max_s, breaker_reset_s) after the platform is (plus one
    # request): 20 s keeps that inside the 30 s recovery target; 60/30 let it reach ~60 s (prodtest).
    backoff_max_s: float = Field(default=20.0, gt=0)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_reset_s: float = Field(default=15.0, gt=0)
    offline_batch_size: int = Field(default=50, ge=1, le=1000)
    max_image_bytes: int = Field(default=5 * 1024 * 1024, ge=10_000, le=5 * 1024 * 1024)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        u = urlparse(v)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise ValueError(f"expected an http(s) URL like https://platform.example/api/v1, got {v!r}")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _tls(self) -> PlatformConfig:
        if self.base_url and self.base_url.startswith("http://") and not self.allow_insecure_http:
            raise ValueError(
                "platform.base_url is plain http: use https, or set platform.allow_insecure_http: true "
                "(lab only)"
            )
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError("platform.backoff_initial_s must not exceed platform.backoff_max_s")
        return self


class StorageConfig(_Section):
    data_dir: Path = Path("/var/lib/rvm-edge")
    max_disk_mb: float = Field(default=2048, gt=0, description="images beyond this are pruned, oldest first")
    image_retention_days: float = Field(default=30, gt=0)


WILDCARDS = ("0.0.0.0", "::")


class ServerConfig(_Section):
    """The HTTP server listens on every address of ``bind`` (one string, or a list), same port.

    Typical: ``[127.0.0.1, <management address>]``: loopback for the health gate and local tools,
    the management address for the monitoring server's scrape of ``/metrics``.
    """

    bind: tuple[str, ...] = Field(
        default=("127.0.0.1",),
        description="IP address, or a list of them, to listen on (e.g. [127.0.0.1, <management address>])",
    )
    port: int = Field(default=8080, ge=0, le=65535)
    token_file: str = "${CREDENTIALS_DIRECTORY}/api-token"

    @field_validator("bind", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("bind")
    @classmethod
    def _ips(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("expected at least one IP address, got an empty list")
        seen: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        for i, addr in enumerate(v):
            where = f" (entry {i + 1} of {len(v)})" if len(v) > 1 else ""
            try:
                ip = ipaddress.ip_address(addr)
            except ValueError:
                raise ValueError(
                    f"expected an IP address (e.g. 127.0.0.1 or the management address), got {addr!r}{where}"
                ) from None
            if ip in seen:
                raise ValueError(f"{addr!r} is listed twice")
            seen.add(ip)
        if len(v) > 1 and any(a in WILDCARDS for a in v):
            raise ValueError(
                f"a wildcard ({' or '.join(WILDCARDS)}) already covers every address: list it alone"
            )
        return tuple(v)


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    file: Path | None = None
    audit_file: Path | None = Field(default=None, description="audit events also go to stdout")

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class ServiceConfig(_Section):
    profile: Literal["dev", "staging", "prod"] = "prod"
    device: DeviceConfig
    source: SourceConfig = SourceConfig()
    models: ModelsConfig
    decision: DecisionSection = DecisionSection()
    platform: PlatformConfig = PlatformConfig()
    storage: StorageConfig = StorageConfig()
    server: ServerConfig = ServerConfig()
    logging: LoggingConfig = LoggingConfig()

    @model_validator(mode="after")
    def _profile_rules(self) -> ServiceConfig:
        if self.profile != "dev" and not self.platform.base_url:
            raise ValueError(f"profile {self.profile!r} needs platform.base_url (only dev may run offline)")
        if self.profile == "prod" and self.platform.allow_insecure_http:
            raise ValueError("profile 'prod' refuses platform.allow_insecure_http: true")
        return self


# Keys a SIGHUP applies live; a change anywhere else is reported as needing a restart.
LIVE_KEYS = (
    "decision",
    "logging.level",
    "platform.heartbeat_interval_s",
    "platform.handshake_interval_s",
    "platform.timeout_s",
    "platform.backoff_initial_s",
    "platform.backoff_max_s",
    "storage.max_disk_mb",
    "storage.image_retention_days",
)


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: where it came from (file or env variable), the key path, what was expected."""

    origin: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.key}: {self.message}" if self.key else f"{self.origin}: {self.message}"


class ConfigError(Exception):
    """Every problem found, so one ``check-config`` run shows them all."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        super().__init__("\n".join(str(i) for i in issues))
        self.issues = issues


def _env_layer(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """``RVM_EDGE__SECTION__KEY=value`` as a nested dict (values parsed as YAML scalars), and origins."""
    layer: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = layer
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = value
            origins[".".join(parts)] = f"environment {name}"
    return layer, origins


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _yaml_file(path: Path) -> dict[str, Any]:
    origin = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(origin, "", "file not found")]) from None
    except OSError as exc:
        raise ConfigError([ConfigIssue(origin, "", f"cannot read: {exc.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigIssue(origin, "", f"not valid YAML: {where}{problem}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [ConfigIssue(origin, "", f"expected a mapping of sections, got {type(data).__name__}")]
        )
    return data


def _describe(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see `rvm-edge check-config --help`)"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if "input" in err and kind not in ("model_type", "dict_type"):
        shown = err["input"]
        if (isinstance(shown, (str, int, float, bool)) or shown is None) and repr(shown) not in msg:
            msg += f" (got {shown!r})"
    return msg


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> ServiceConfig:
    """defaults < file < environment; raises :class:`ConfigError` listing every problem."""
    environ = os.environ if environ is None else environ
    data = _yaml_file(path) if path is not None else {}
    env, env_origins = _env_layer(environ)
    merged = _merge(data, env)
    try:
        return ServiceConfig.model_validate(merged)
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            origin = next(
                (
                    o
                    for k, o in env_origins.items()
                    if key == k or key.startswith(k + ".") or k.startswith(key + ".")
                ),
                str(path) if path else "configuration",
            )
            issues.append(ConfigIssue(origin, key, _describe(err)))
        raise ConfigError(issues) from None


def expand_path(template: str, environ: Mapping[str, str] | None = None) -> Path:
    """``${CREDENTIALS_DIRECTORY}/api-key`` -> a path; a clear error when the variable is unset."""
    environ = os.environ if environ is None else environ
    missing = [v for v in re.findall(r"\$\{(\w+)\}", template) if v not in environ]
    if missing:
        raise SecretError(
            f"{template}: ${{{missing[0]}}} is not set (systemd sets {CREDENTIALS_VAR} with "
            "LoadCredential=; outside systemd set it or give an absolute path)"
        )
    return Path(re.sub(r"\$\{(\w+)\}", lambda m: environ[m.group(1)], template))


class SecretError(Exception):
    """A secret file that is missing, unreadable or empty; the message names the file, never the value."""


def read_secret(template: str, key: str, environ: Mapping[str, str] | None = None) -> str:
    """The stripped content of a secret file; errors name the config key and the path only."""
    path = expand_path(template, environ)
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise SecretError(f"{key}: {path} does not exist") from None
    except OSError as exc:
        raise SecretError(f"{key}: cannot read {path}: {exc.strerror}") from None
    if not value or any(c.isspace() for c in value):
        raise SecretError(f"{key}: {path} must hold one token without spaces")
    return value


def changed_keys(old: ServiceConfig, new: ServiceConfig) -> list[str]:
    """Dotted paths (to the section's leaf) whose values differ."""
    out: list[str] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, BaseModel) and isinstance(b, BaseModel):
            for name in type(a).model_fields:
                walk(getattr(a, name), getattr(b, name), f"{prefix}.{name}" if prefix else name)
        elif a != b:
            out.append(prefix)

    walk(old, new, "")
    return out


def keep_values(new: ServiceConfig, old: ServiceConfig, keys: list[str]) -> ServiceConfig:
    """``new`` with the values at ``keys`` (dotted paths) taken from ``old``: a reload keeps the
    running value of every key that needs a restart."""
    data, before = new.model_dump(), old.model_dump()
    for key in keys:
        *parents, leaf = key.split(".")
        dst, src = data, before
        for p in parents:
            dst, src = dst[p], src[p]
        dst[leaf] = src[leaf]
    return ServiceConfig.model_validate(data)


def is_live(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in LIVE_KEYS)
