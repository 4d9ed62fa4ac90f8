"""``rvm-edge run``: wire config, store, pipeline, recorder, outbox, platform link and HTTP server.

Lifecycle (systemd ``Type=notify``): load and validate the config, lock the data directory,
open and migrate the store, read the secrets, start the HTTP server (``/healthz`` answers
while models load), load and warm the models, start the pipeline, then ``READY=1``. The main
thread owns signals: SIGTERM/SIGINT drain the pipeline (every decided item is committed) and
exit 0, also while the models are still loading (they load on a worker thread that a stop does
not wait for: loading, compiling and warming up run in native code that cannot be interrupted);
SIGHUP reloads the config (live keys apply, the rest are reported as needing a restart; an
invalid file keeps the old config). ``WATCHDOG=1`` is sent at half of ``WATCHDOG_USEC`` only
while the pipeline's threads are alive, so a wedged service is restarted by systemd.

Exit codes (also in app/README.md):
  0 stopped cleanly   1 internal error   2 invalid config   3 models cannot be loaded
  4 storage unusable (data_dir, database, lock held)   5 secret file missing or unreadable
  6 cannot listen on an address of server.bind   7 source cannot be opened / pipeline failed
  75 the platform asked for a restart (non-zero, so Restart=on-failure restarts it too)
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rvm_edge import __version__
from rvm_edge.service import config as cfgmod
from rvm_edge.service.config import ConfigError, SecretError, ServiceConfig, load_config, read_secret
from rvm_edge.service.dashboard import LiveView
from rvm_edge.service.deposit import ModelInfo, OfflinePricing
from rvm_edge.service.diskguard import DiskGuard
from rvm_edge.service.health import Readiness
from rvm_edge.service.heartbeat import Link
from rvm_edge.service.jsonlog import REDACTOR, audit, set_level, setup_logging
from rvm_edge.service.metrics import Metrics
from rvm_edge.service.outbox import Sender, backoff_from
from rvm_edge.service.platform import PlatformClient, PlatformSettings
from rvm_edge.service.recorder import Recorder
from rvm_edge.service.sdnotify import Notifier
from rvm_edge.service.server import HttpServer, favour_responsiveness, lower_worker_priority
from rvm_edge.service.store import Store, StoreError

log = logging.getLogger(__name__)

EXIT_OK, EXIT_INTERNAL, EXIT_CONFIG, EXIT_MODELS, EXIT_STORAGE = 0, 1, 2, 3, 4
EXIT_SECRETS, EXIT_BIND, EXIT_PIPELINE, EXIT_RESTART = 5, 6, 7, 75
STOP_BUDGET_S = 15.0  # the role's TimeoutStopSec is 20 s
PIPELINE_DRAIN_S = 8.0
STATUS_EVERY_S = 10.0  # systemctl status line; also the longest the main loop sleeps without a watchdog
WARMUP_RUNS = 2  # detector inferences before READY: the first real frame must not pay for lazy init


class StartupError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class KeyFile:
    """The API key, re-read when the file changes (a rotated key needs no restart)."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.value = read_secret(template, "platform.api_key_file")
        REDACTOR.add(self.value)

    def __call__(self) -> str:
        return self.value

    def reload(self) -> bool:
        """True when the file now holds a different key (then the caller handshakes again)."""
        try:
            new = read_secret(self.template, "platform.api_key_file")
        except SecretError as exc:
            log.error("cannot re-read the API key", extra={"error": str(exc)})
            return False
        if new == self.value:
            return False
        REDACTOR.add(new)
        self.value = new
        audit("api_key_changed")
        return True


class Service:
    """One running service; :meth:`run` returns the process exit code."""

    def __init__(self, config_path: Path, config: ServiceConfig) -> None:
        self.config_path, self.cfg = config_path, config
        self.notifier = Notifier()
        self.shutdown = threading.Event()
        self._wake = threading.Event()  # set by a stop signal or by the model loader when it is done
        self._loader: threading.Thread | None = None
        self.exit_code = EXIT_OK
        self._reload = threading.Event()
        self._lock_fd: int | None = None
        self.store: Store | None = None
        self.pipeline: Any = None
        self.recorder: Recorder | None = None
        self.guard: DiskGuard | None = None
        self.sender: Sender | None = None
        self.link: Link | None = None
        self.client: PlatformClient | None = None
        self.server: HttpServer | None = None
        self.model_info = ModelInfo("", "", "", config.models.backend)
        self.prom = Metrics(self._metric_state, __version__)
        self.live = LiveView()
        self.pricing = OfflinePricing(
            dict(config.decision.points), dict(config.decision.weight_kg), self._offline
        )
        self.health = Readiness(
            self,
            lambda: self.model_info.name,
            config.storage.data_dir,
            lambda: self.cfg.storage.max_disk_mb,
        )
        self.api_token: str | None = None

    # -- start -----------------------------------------------------------------------------
    def _lock_data_dir(self) -> None:
        d = self.cfg.storage.data_dir
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd = os.open(d / "rvm-edge.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StartupError(EXIT_STORAGE, f"storage.data_dir {d}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StartupError(EXIT_STORAGE, f"storage.data_dir {d}: another rvm-edge is using it") from None
        self._lock_fd = fd

    def _secrets(self) -> str | None:
        p = self.cfg.platform
        key: KeyFile | None = None
        try:
            if p.base_url:
                key = KeyFile(p.api_key_file)
            try:
                self.api_token = read_secret(self.cfg.server.token_file, "server.token_file")
                REDACTOR.add(self.api_token)
            except SecretError as exc:
                if self.cfg.profile != "dev":
                    raise
                log.warning("no dashboard token: / and /api answer 401", extra={"error": str(exc)})
        except SecretError as exc:
            raise StartupError(EXIT_SECRETS, str(exc)) from None
        self._key = key
        return key.value if key else None

    def _load_models(self) -> tuple[Any, Any]:
        from rvm_edge.backends.base import BackendError
        from rvm_edge.detector import DetectorConfig, load_detector
        from rvm_edge.manifest import ManifestError, load_manifest
        from rvm_edge.segment import load_segmenter

        m = self.cfg.models
        # compiled OpenVINO models are cached under data_dir by default: the unit's sandbox makes
        # everything else read-only, and compiling SAM2 again on every start takes minutes
        cache_dir = m.cache_dir or self.cfg.storage.data_dir / "cache" / "openvino"
        options: dict[str, Any] = {"threads": m.threads, "allow_spinning": m.allow_spinning}
        if m.backend == "openvino":
            options.update(precision=m.precision, cache_dir=cache_dir)
        try:
            manifest = load_manifest(m.manifest)
            entry = manifest.by_name(m.model) if m.model else manifest.by_role("detector")
            if entry.role != "detector":
                raise ManifestError(f"models.model {m.model!r}: a {entry.role} model, not a detector")
            self.model_info = ModelInfo(entry.name, entry.version, entry.sha256, m.backend)
            engine = m.engine
            # engines built on this device: refused (EngineMismatch) unless they are these models'
            if m.engines:
                from rvm_edge.engines import check_engines_here

                sam2 = m.sam2_manifest()
                sam2_used = m.segmentation.enabled and sam2.is_file()
                check_engines_here(
                    m.engines, [manifest, *([load_manifest(sam2)] if sam2_used else [])], m.backend
                )
                if m.backend == "tensorrt" and engine is None:
                    engine = m.engines.get(entry.name)
            detector = load_detector(
                m.manifest,
                m.backend,
                entry.name,
                DetectorConfig(m.conf, m.iou),
                engine_path=engine,
                **options,
            )
            segmenter = None
            if m.segmentation.enabled:
                seg = m.segmentation
                segmenter = load_segmenter(
                    m.sam2_manifest(), seg.threads, seg.backend, seg.precision, cache_dir, m.allow_spinning
                )
        except (ManifestError, BackendError, FileNotFoundError, ValueError) as exc:
            raise StartupError(EXIT_MODELS, f"models: {exc}") from None
        return detector, segmenter

    def _load_and_warm(self) -> tuple[Any, Any] | None:
        """The models, loaded and warmed up on a worker thread while the main thread waits for them
        or for a stop signal; None when a stop came first.

        Loading, an OpenVINO compile (minutes for SAM2) and the warm-up inferences run in native
        code that cannot be interrupted, and Python runs a signal handler only once the main
        thread is back in Python: loading on the main thread would make SIGTERM wait for all of
        it, past the unit's TimeoutStopSec, and end in a SIGKILL. The loader is a daemon thread
        that a stop abandons (see :func:`run`)."""
        outcome: list[tuple[Any, Any]] = []
        failure: list[BaseException] = []

        def load() -> None:
            try:
                detector, segmenter = self._load_models()
                self.notifier.status("warming up models")
                detector.warm_up(WARMUP_RUNS)
                if segmenter is not None:
                    segmenter.warm_up()
                outcome.append((detector, segmenter))
            except BaseException as exc:  # handed to the main thread, which reports it
                failure.append(exc)
            finally:
                self._wake.set()

        self._loader = threading.Thread(target=load, name="rvm-load-models", daemon=True)
        self._loader.start()
        self._wake.wait()
        if failure:
            raise failure[0]
        if not outcome:  # woken by a stop signal before the models were ready
            log.info("stop requested while the models were loading: not waiting for them")
            return None
        return outcome[0]

    @property
    def loading_abandoned(self) -> bool:
        """True when a stop left the model loader running (in native code)."""
        return self._loader is not None and self._loader.is_alive()

    def _platform(self, store: Store) -> None:
        p = self.cfg.platform
        if not p.base_url or self._key is None:
            log.warning("platform.base_url not set: running offline (dev profile), deposits stay queued")
            return
        settings = PlatformSettings(
            p.base_url,
            p.timeout_s,
            p.connect_timeout_s,
            str(p.ca_bundle) if p.ca_bundle else None,
            p.breaker_failures,
            p.breaker_reset_s,
        )
        self.client = PlatformClient(settings, self._key, self.prom.platform_error)
        self.sender = Sender(
            store,
            self.client,
            backoff_from(p.backoff_initial_s, p.backoff_max_s),
            p.max_image_bytes,
            p.offline_batch_size,
            on_auth_failure=self._key_rotated,
        )
        d = self.cfg.device
        self.link = Link(
            self.client,
            d.id,
            d.name or d.id,
            p.heartbeat_interval_s,
            p.handshake_interval_s,
            backoff_from(p.backoff_initial_s, p.backoff_max_s),
            str(self.cfg.storage.data_dir),
            on_restart=self._restart_requested,
            on_policy=self._policy,
            key_changed=self._key_rotated,
            model=self.model_info.to_json(),
            zt_address=d.zerotier_address,
            timezone=d.timezone,
        )
        self.link.extra_health = lambda: {"outbox": store.status().to_json(), "ready": self.readiness()[0]}
        self.link.on_recovered = self.sender.wake

    def _key_rotated(self) -> bool:
        if self._key is not None and self._key.reload():
            if self.link is not None:
                self.link.state.handshake_ok = False
                self.link.wake()
            if self.sender is not None:
                self.sender.wake()
            return True
        return False

    def _restart_requested(self) -> None:
        self.exit_code = EXIT_RESTART
        self.shutdown.set()
        self._wake.set()

    def _policy(self, maintenance: bool) -> None:
        if self.recorder is not None:
            self.recorder.accepting = not maintenance

    def _offline(self) -> bool:
        return self.sender is not None and self.sender.state.link in ("down",)

    def start(self) -> None:
        cfg = self.cfg
        self._lock_data_dir()
        try:
            self.store = Store(cfg.storage.data_dir)
        except StoreError as exc:
            raise StartupError(EXIT_STORAGE, str(exc)) from None
        self.store.start_checkpointer()
        self.guard = DiskGuard(
            self.store, cfg.storage.data_dir, lambda: self.cfg.storage.image_retention_days * 86400
        )
        self.guard.check()  # a partition that filled while the service was down: free what it can first
        self._secrets()
        try:
            self.server = HttpServer(cfg.server.bind, cfg.server.port, self, self.api_token)
        except OSError as exc:
            raise StartupError(EXIT_BIND, f"server.bind: {exc.strerror}") from None
        favour_responsiveness()
        self.server.start()
        log.info(
            "http server listening",
            extra={"bind": [f"{h}:{p}" for h, p in self.server.addresses], "port": self.server.port},
        )
        lower_worker_priority()
        self.notifier.status("loading models")
        models = self._load_and_warm()
        if models is None:
            return
        detector, segmenter = models
        self._platform(self.store)
        from rvm_edge.pipeline import Pipeline, PipelineConfig
        from rvm_edge.sources import SourceError, open_source

        try:
            source = open_source(cfg.source.spec(), loop=cfg.source.loop, fps=cfg.source.fps)
        except SourceError as exc:
            raise StartupError(EXIT_PIPELINE, f"source: {exc}") from None
        self.recorder = Recorder(
            self.store,
            cfg.device.id,
            self.model_info,
            cfg.platform.max_image_bytes,
            pricing=self.pricing,
            record_empty=cfg.decision.record_empty,
            listeners=[self.prom.recorded, self.live.recorded],
            has_space=self.guard.has_space,
        )
        try:
            decision = cfg.decision.to_runtime()
            self.pipeline = Pipeline(
                source,
                detector,
                decision,
                segmenter,
                [self.recorder, self.prom, self.live],  # the recorder first: durable before shown
                PipelineConfig(segment=segmenter is not None, warmup_runs=0),  # warmed up above
            )
        except ValueError as exc:
            raise StartupError(EXIT_CONFIG, f"{self.config_path}: {exc}") from None
        if self.shutdown.is_set():  # SIGTERM since the models loaded: never report ready
            return
        self.pipeline.start()
        if self.sender is not None and self.link is not None:
            self.sender.start()
            self.link.start()
        self.notifier.ready(f"ready: {self.model_info.name} on {cfg.models.backend}")
        log.info("ready", extra={"model": self.model_info.to_json(), "version": __version__})

    # -- state for the server ----------------------------------------------------------------
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return self.health.check()

    def _metric_state(self) -> dict[str, Any]:
        s: dict[str, Any] = {"model": self.model_info.to_json() if self.model_info.name else {}}
        if self.pipeline is not None:
            ps = self.pipeline.stats
            s.update(
                frames_processed=ps.frames_processed,
                frames_dropped=ps.frames_dropped,
                frames_unreadable=ps.frames_unreadable,
                pipeline_errors=ps.errors,
                stage_cpu_s=dict(ps.cpu_s),
            )
        if self.store is not None:
            st = self.store.status()
            s.update(
                outbox_depth=st.pending,
                outbox_parked=st.parked,
                outbox_oldest_age_s=st.oldest_pending_age_s,
                offline_pending=st.offline_pending,
                image_bytes=st.image_bytes,
            )
        if self.recorder is not None:
            s["in_flight"] = self.recorder.in_flight
            s["not_recorded_disk_full"] = self.recorder.no_space
        if self.link is not None and self.link.state.heartbeat_age_s is not None:
            s["heartbeat_age_s"] = self.link.state.heartbeat_age_s
        s["link_up"] = self.sender is not None and self.sender.state.link == "up"
        s["ready"] = self.readiness()[0]
        return s

    def metrics(self) -> bytes:
        return self.prom.render()

    def status(self) -> dict[str, Any]:
        _ready, body = self.readiness()
        lat: dict[str, float | None] = {"e2e_p50": None, "e2e_p95": None}
        if self.pipeline is not None:
            e2e = sorted(self.pipeline.stats.timings.get("e2e_ms", []))
            if e2e:
                lat = {"e2e_p50": e2e[len(e2e) // 2], "e2e_p95": e2e[min(len(e2e) - 1, int(len(e2e) * 0.95))]}
        platform: dict[str, Any] = {"link": "disabled", "heartbeat_status": "disabled"}
        if self.sender is not None and self.link is not None and self.client is not None:
            platform = {
                "base_url": self.cfg.platform.base_url,
                "link": self.sender.state.link,
                "breaker": self.client.breaker.state,
                "last_error": self.sender.state.last_error or self.link.state.heartbeat_error,
                "sent_this_run": self.sender.state.sent,
                **self.link.state.to_json(),
            }
        rec = self.recorder
        return {
            **body,
            "device": {"id": self.cfg.device.id, "name": self.cfg.device.name or self.cfg.device.id},
            "profile": self.cfg.profile,
            "model": self.model_info.to_json(),
            "accepting": bool(rec and rec.accepting and rec.has_space()),
            "recent": self.live.recent(),
            "latency_ms": lat,
            "outbox": self.store.status().to_json() if self.store else {},
            "platform": platform,
        }

    def last_frame_jpeg(self) -> bytes | None:
        return self.live.frame_jpeg()

    # -- running ---------------------------------------------------------------------------
    def reload(self) -> None:
        self.notifier.reloading()
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config reload refused: keeping the running config", extra={"errors": str(exc)})
            audit("config_reload", result="refused", errors=[str(i) for i in exc.issues])
            self.notifier.ready("ready (reload refused: see log)")
            return
        changed = cfgmod.changed_keys(self.cfg, new)
        live = [k for k in changed if cfgmod.is_live(k)]
        restart = [k for k in changed if not cfgmod.is_live(k)]
        if any(k.startswith("decision") for k in live) and self.pipeline is not None:
            try:
                decision = new.decision.to_runtime()
                decision.check_classes(self.pipeline.detector.classes)
            except ValueError as exc:
                log.error("config reload refused: keeping the running config", extra={"errors": str(exc)})
                audit("config_reload", result="refused", errors=[str(exc)])
                self.notifier.ready("ready (reload refused: see log)")
                return
            self.pipeline.decision = decision
        self.pricing.points, self.pricing.weight_kg = dict(new.decision.points), dict(new.decision.weight_kg)
        if self.recorder is not None:
            self.recorder.record_empty = new.decision.record_empty
        set_level(new.logging.level)
        p = new.platform
        if self.link is not None and self.client is not None and self.sender is not None:
            self.link.interval_s, self.link.handshake_interval_s = (
                p.heartbeat_interval_s,
                p.handshake_interval_s,
            )
            self.client.settings.timeout_s = p.timeout_s
            for b in (self.sender.backoff, self.link.backoff):
                b.initial, b.maximum = p.backoff_initial_s, p.backoff_max_s
            self.link.wake()
        # keys needing a restart keep their running value until then
        self.cfg = cfgmod.keep_values(new, self.cfg, restart)
        if restart:
            log.warning("config keys changed that need a restart", extra={"keys": restart})
        audit("config_reload", result="applied", applied=live, needs_restart=restart)
        self.notifier.ready("ready (config reloaded)")

    def _prune(self) -> None:
        if self.store is None:
            return
        s = self.cfg.storage
        try:
            cleared = self.store.prune_images(int(s.max_disk_mb * 1e6), s.image_retention_days * 86400)
        except sqlite3.Error as exc:  # housekeeping (a full partition, say): the next round tries again
            log.error("could not prune images", extra={"error": str(exc)})
            return
        if cleared:
            log.info("images pruned (records kept)", extra={"count": cleared})

    def loop(self) -> None:
        """The main thread's housekeeping. It sleeps until something needs it: a signal, the
        pipeline failing, the watchdog's half-period, or the next status line (every 10 s); no
        fixed 1 s poll (issue 17: an idle device should not wake for nothing)."""
        interval = self.notifier.watchdog_interval_s
        tick = min(interval, STATUS_EVERY_S) if interval else STATUS_EVERY_S
        if self.pipeline is not None:
            self.pipeline.on_failure = self._wake.set
        next_prune = next_status = 0.0
        while not self.shutdown.is_set():
            self._wake.clear()
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            if self.pipeline is not None and self.pipeline.failure is not None:
                log.error("pipeline failed", extra={"error": str(self.pipeline.failure)})
                self.exit_code = EXIT_PIPELINE
                break
            if interval and self.health.pipeline_alive():
                self.notifier.watchdog()
            if time.monotonic() >= next_prune:
                self._prune()
                next_prune = time.monotonic() + 60
            if self.guard is not None:
                self.guard.check()  # one statvfs; acts only when the partition runs low
            if time.monotonic() >= next_status:
                self.notifier.status(self._status_line())
                next_status = time.monotonic() + STATUS_EVERY_S
            if self.shutdown.is_set() or self._reload.is_set():
                continue
            if self.pipeline is not None and self.pipeline.failure is not None:
                continue
            self._wake.wait(tick)

    def _status_line(self) -> str:
        """What ``systemctl status`` shows: frames, outbox, link."""
        ready, body = self.readiness()
        st = self.store.status() if self.store else None
        link = self.sender.state.link if self.sender else "offline (no platform)"
        outbox = f"{st.pending} pending, {st.parked} parked" if st else "-"
        state = "ready" if ready else "not ready"
        return f"{state}: {body['frames_processed']} frames; outbox {outbox}; link {link}"

    def stop(self) -> None:
        """Drain within STOP_BUDGET_S (the unit's TimeoutStopSec is 20 s): the pipeline first, so
        every decided item is committed; then the platform threads, together."""
        self.notifier.stopping("draining")
        t0 = time.monotonic()
        deadline = t0 + STOP_BUDGET_S
        if self.pipeline is not None:
            self.pipeline.stop(timeout=PIPELINE_DRAIN_S)
        for part in (self.sender, self.link):
            if part is not None:
                part.request_stop()
        quiet = True
        for part in (self.sender, self.link):
            if part is not None:
                quiet = part.stop(timeout=max(0.0, deadline - time.monotonic())) and quiet
        if self.server is not None:
            self.server.stop()
        if self.client is not None:
            self.client.close()
        if self.store is not None:
            if quiet:
                self.store.close()
            else:  # closing under a thread that is still sending would only add noise; WAL is crash-safe
                log.warning("a platform request was still in the air at exit: that deposit will be resent")
        counts: dict[str, Any] = {"drain_s": round(time.monotonic() - t0, 3)}
        if self.pipeline is not None and self.recorder is not None:
            counts.update(frames_processed=self.pipeline.stats.frames_processed, **self.recorder.counts())
        log.info("stopped", extra=counts)

    def install_signals(self) -> None:
        """SIGTERM/SIGINT stop, SIGHUP reloads; the events are set by a thread, not the handler.

        Why: a Python signal handler runs in the main thread between two of its bytecodes, and the
        main loop keeps taking ``_wake``'s (and ``_reload``'s) non-reentrant lock (``clear()``,
        ``wait()``). A handler calling ``_wake.set()`` at such a moment waited for a lock its own
        thread held: the service never stopped (seen as a SIGTERM ignored under load, until the
        unit's SIGKILL). So the C-level handler only writes the signal number to a pipe
        (``signal.set_wakeup_fd``) and the ``rvm-signals`` thread sets the events from there."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        stops = {int(signal.SIGTERM), int(signal.SIGINT)}

        def deliver() -> None:
            while data := os.read(read_fd, 64):
                for signum in data:
                    if signum in stops:
                        self.shutdown.set()
                    elif signum == signal.SIGHUP:
                        self._reload.set()
                    self._wake.set()

        threading.Thread(target=deliver, name="rvm-signals", daemon=True).start()
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda _signum, _frame: None)  # the wakeup fd carries it


def run(config_path: Path) -> int:
    """The whole service; returns the exit code (documented in the module docstring)."""
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        setup_logging()
        log.error("invalid configuration", extra={"errors": [str(i) for i in exc.issues]})
        return EXIT_CONFIG
    try:
        setup_logging(cfg.logging.level, cfg.logging.file, cfg.logging.audit_file)
    except OSError as exc:
        setup_logging(cfg.logging.level)
        log.error("cannot open a log file", extra={"error": f"logging.file/audit_file: {exc}"})
        return EXIT_CONFIG
    audit("start", version=__version__, config=str(config_path), device=cfg.device.id)
    service = Service(config_path, cfg)
    service.install_signals()
    try:
        service.start()
        service.loop()
    except StartupError as exc:
        log.error("cannot start", extra={"error": str(exc), "exit_code": exc.code})
        service.exit_code = exc.code
    except Exception:
        log.exception("internal error")
        service.exit_code = EXIT_INTERNAL
    finally:
        try:
            service.stop()
        except Exception:
            log.exception("error while stopping")
        audit("stop", version=__version__, exit_code=service.exit_code)
    if service.loading_abandoned:
        # the loader is still in native code (ONNX Runtime, OpenVINO): a normal interpreter exit
        # would run their C++ destructors under it and could crash at exit instead of stopping
        # cleanly; everything is committed and closed by now, so flush the logs and end here
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(service.exit_code)
    return service.exit_code
