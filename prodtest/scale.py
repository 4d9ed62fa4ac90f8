"""Fleet scale (issue 15 item 4): converge, no-change converge, deploy and rollback timed on a fleet of
extra lab devices grown 3 -> 10 -> 20 (``PRODTEST_SCALE_SIZES``), each size with and without 100 ms of
round trip added inside the devices' own network namespaces (``PRODTEST_SCALE_RTTS``, in the order
given), and availability sampled throughout. The scale devices run the lab's camera at
``PRODTEST_SCALE_FPS`` (0.2 by default): the figures are the control node's, not this machine's two
cores running ten or twenty inference services at the lab's 2 fps.

The scale fleet is made of ``rvm-scale-NN`` devices only (``lab/labctl.py add``): the fleet's own
devices are never deployed to or measured here. Ansible reaches a scale device with plain ssh at its lab
address (inventories/lab reaches its hosts through ``podman exec``, which no network delay can touch),
from a generated inventory source used beside inventories/lab: the lab's group_vars and servers apply
to the scale devices, and the servers keep admitting the fleet's own devices while they admit these.

Latency: this machine's kernel has no ``sch_netem`` (nor ``fq``, so no BPF departure-time trick either),
so ``tc netem`` cannot run here. The delay is an NFQUEUE in each scale device's own network namespace
(an iptables-legacy rule run there with ``nsenter --net``) and a delayer in this process that accepts
every queued packet ``RTT`` seconds after it arrived. It holds the packets the device RECEIVES: a
packet held on the way out is still charged to its sending socket, and TCP small queues then let
~2 packets per delay through (netem orphans the packet for that reason; an NFQUEUE cannot), whereas
delaying arrivals gives the same round trip to every exchange (the control node's and the servers')
without throttling bulk transfers (20 MB in ~1.5 s through it, measured in a scratch namespace pair).
The rule uses ``--queue-bypass``: were the delayer gone, packets pass undelayed, never dropped.

Availability: every scale device's /readyz (and Prometheus ``up{job="rvm_edge"}``) is sampled from
the moment its first converge succeeded to the end of the stage. A device restarts once in every
deploy and rollback, so the figures come twice: over the whole stage, and outside the deploy and
rollback runs (the windows are the playbooks' wall-clock spans, the whole fleet's).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import itertools
import json
import os
import re
import select
import socket
import statistics
import struct
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from prodtest.figures import Figure, Plot, Results
from prodtest.lab import ROOT, Lab, LabError, address, podman_exec, sh
from prodtest.profile import Profile
from prodtest.progress import STOP, say
from prodtest.push import first_failure, play_env, stop_play
from prodtest.releases import app_version, build_release

STAGE = "Fleet scale"
PREFIX = "rvm-scale-"
NAME = re.compile(r"^rvm-scale-\d{2}$")
MAX_DEVICES = 30
DEFAULT_SIZES = {"quick": "3", "full": "3,10,20"}
WORK = ROOT / ".cache" / "prodtest" / "scale"
LAB_INVENTORY = "inventories/lab"
SSH_KEY = ROOT / ".lab" / "ssh" / "id_ed25519"
SSH_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
LABCTL = [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "lab" / "labctl.py")]
PLAYBOOK = str(ROOT / ".venv" / "bin" / "ansible-playbook")
SERVERS_FW = "rvm-platform,rvm-backup"  # their firewalls admit the devices by inventory group
MONITOR = "rvm-monitor"
NETWORK = "8056c2e21c000001"
CENTRAL = "http://127.0.0.1:9994/api/v1"
BACKUP = "rvm-backup"
DEFAULT_RTTS_MS = (0, 100)
MAX_RTT_MS = 1000
DEFAULT_SCALE_FPS = 0.2
MAX_FPS = 30.0
LAB_DEVICE_VARS = ROOT / "inventories" / "lab" / "group_vars" / "rvm_devices.yml"
NOCHANGE_TARGET_S = 30.0  # DESIGN §9: a no-change converge within 30 s
ROLLBACK_TARGET_S = 10.0  # one device back to healthy
AVAIL_TARGET = 99.9
SAMPLE_S = 2.0
STAGE_BOUND_S = 6 * 3600.0  # the sampler and the delayer never outlive this
OPS = ("converge", "nochange", "deploy", "rollback")
OP_TITLE = {
    "converge": "full converge (site.yml, rvm_converge_force)",
    "nochange": "no-change converge (site.yml, fast path)",
    "deploy": "deploy of a good release (deploy.yml)",
    "rollback": "rollback (rollback.yml)",
}
RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)"
)


# ---------------------------------------------------------------- pure parts (unit-tested)


def int_list(name: str, raw: str) -> list[int]:
    """``raw`` ("3,10,20") as integers; the error names the setting and what was expected."""
    try:
        values = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise LabError(f"{name}={raw!r}: expected whole numbers separated by commas, like 3,10,20") from None
    if not values:
        raise LabError(f"{name}={raw!r}: expected at least one number")
    return values


def scale_sizes(text: str | None, profile: str) -> list[int]:
    """The fleet sizes to measure, in devices: ``PRODTEST_SCALE_SIZES`` ("3,10,20"), else the profile's
    default. Strictly increasing (the fleet only grows), each 1..MAX_DEVICES."""
    raw = text if text and text.strip() else DEFAULT_SIZES.get(profile, DEFAULT_SIZES["full"])
    sizes = int_list("PRODTEST_SCALE_SIZES", raw)
    if any(not 1 <= s <= MAX_DEVICES for s in sizes):
        raise LabError(f"PRODTEST_SCALE_SIZES={raw!r}: each size must be 1..{MAX_DEVICES}")
    if any(b <= a for a, b in itertools.pairwise(sizes)):
        raise LabError(f"PRODTEST_SCALE_SIZES={raw!r}: sizes must grow (the fleet is only added to)")
    return sizes


def scale_rtts(text: str | None) -> list[int]:
    """The round trips added at each size, in ms and in the order measured: ``PRODTEST_SCALE_RTTS``
    ("100,0" measures the delayed runs first, e.g. when a run may be stopped before the second),
    else 0 then 100. Each 0..MAX_RTT_MS, none twice."""
    raw = text if text and text.strip() else ",".join(str(r) for r in DEFAULT_RTTS_MS)
    rtts = int_list("PRODTEST_SCALE_RTTS", raw)
    if any(not 0 <= r <= MAX_RTT_MS for r in rtts):
        raise LabError(f"PRODTEST_SCALE_RTTS={raw!r}: each round trip must be 0..{MAX_RTT_MS} ms")
    if len(set(rtts)) != len(rtts):
        raise LabError(f"PRODTEST_SCALE_RTTS={raw!r}: a round trip is measured once per size")
    return rtts


def scale_fps(text: str | None) -> float:
    """The scale devices' camera rate, ``PRODTEST_SCALE_FPS`` (default 0.2). The stage times the
    control node's work; a lab device's inference burns CPU a Jetson has to itself (0.04 cores per
    device at the lab's 2 fps, measured), so many scale devices at full rate would time this machine's
    two cores instead."""
    raw = text.strip() if text and text.strip() else f"{DEFAULT_SCALE_FPS:g}"
    try:
        fps = float(raw)
    except ValueError:
        raise LabError(f"PRODTEST_SCALE_FPS={raw!r}: expected frames per second, like 0.2") from None
    if not 0 < fps <= MAX_FPS:
        raise LabError(f"PRODTEST_SCALE_FPS={raw!r}: the rate must be above 0 and at most {MAX_FPS:g}")
    return fps


def camera_source(fps: float, group_vars: Path = LAB_DEVICE_VARS) -> dict[str, Any]:
    """The lab devices' ``rvm_edge_source`` (written once, in the lab's group_vars) at ``fps``."""
    try:
        source = (yaml.safe_load(group_vars.read_text()) or {})["rvm_edge_source"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise LabError(f"{group_vars}: no rvm_edge_source to copy for the scale devices ({exc})") from None
    if not isinstance(source, dict):
        raise LabError(f"{group_vars}: rvm_edge_source is {type(source).__name__}, expected a mapping")
    return {**source, "fps": fps}


def rtt_label(rtt_ms: int) -> str:
    return "no added latency" if rtt_ms == 0 else f"+{rtt_ms} ms RTT"


def device_names(n: int) -> list[str]:
    return [f"{PREFIX}{i:02d}" for i in range(1, n + 1)]


def inventory(
    devices: Mapping[str, str], key: Path = SSH_KEY, camera: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The scale devices as an inventory source used beside inventories/lab: group rvm_devices, plain
    ssh to each lab address (so a delay on the lab network applies), the lab's key by its absolute
    path (the lab's group_vars find it relative to inventory_dir, which is this file's directory),
    and ``camera`` as their ``rvm_edge_source`` when given. Host variables outrank the lab's
    group_vars, which say ``podman exec`` and the lab's own camera rate."""
    for name in devices:
        if not NAME.match(name):
            raise LabError(f"{name} is not a scale device name ({PREFIX}NN)")
    hosts = {
        name: {
            "ansible_host": addr,
            "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": SSH_ARGS,
            **({"rvm_edge_source": dict(camera)} if camera is not None else {}),
        }
        for name, addr in sorted(devices.items())
    }
    return {"all": {"children": {"rvm_devices": {"hosts": hosts}}}}


def write_inventory(
    devices: Mapping[str, str], path: Path, key: Path = SSH_KEY, camera: Mapping[str, Any] | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    head = "# Generated by prodtest/scale.py for the fleet-scale stage; used with -i inventories/lab.\n"
    path.write_text(head + yaml.safe_dump(inventory(devices, key, camera), sort_keys=True))
    return path


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x (seconds per device); None with fewer than two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def in_window(t: float, windows: Sequence[tuple[float, float]]) -> bool:
    return any(a <= t <= b for a, b in windows)


def availability(
    samples: Sequence[tuple[float, str, bool]], windows: Sequence[tuple[float, float]] = ()
) -> dict[str, tuple[int, int]]:
    """device -> (ready samples, samples), leaving out samples inside ``windows`` (pass none for all)."""
    out: dict[str, tuple[int, int]] = {}
    for t, device, ok in samples:
        if in_window(t, windows):
            continue
        good, n = out.get(device, (0, 0))
        out[device] = (good + int(ok), n + 1)
    return out


def pct(counts: tuple[int, int] | None) -> float | None:
    if not counts or counts[1] == 0:
        return None
    return counts[0] / counts[1] * 100


def fleet(per_device: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
    """Every device's samples pooled: the fleet's share of device-samples that were ready."""
    return sum(g for g, _ in per_device.values()), sum(n for _, n in per_device.values())


def recap(output: str) -> dict[str, dict[str, int]]:
    """ansible-playbook's PLAY RECAP, host -> counts (ok, changed, unreachable, failed)."""
    found: dict[str, dict[str, int]] = {}
    for line in output.splitlines():
        m = RECAP.match(line.strip())
        if m:
            found[m["host"]] = {k: int(v) for k, v in m.groupdict().items() if k != "host"}
    return found


def default_dev(route: str) -> str:
    """The interface of ``ip -o -4 route show default`` (the device's lab interface)."""
    m = re.search(r"\bdev (\S+)", route)
    if not m:
        raise LabError(f"no default route in {route!r}")
    return m.group(1)


def queue_rule_argv(pid: int, action: str, dev: str, queue: int) -> list[str]:
    """iptables-legacy run in the network namespace of the process ``pid`` only (a scale device's
    PID 1): every packet arriving on ``dev`` goes to NFQUEUE ``queue``, passed on if no one listens."""
    if action not in ("-A", "-D", "-C"):
        raise LabError(f"unknown iptables action {action}")
    if pid <= 1:
        raise LabError(f"pid {pid} is not a container's process")
    return [
        "nsenter", f"--target={pid}", "--net", "iptables-legacy", "-w", "5", "-t", "mangle", action,
        "PREROUTING", "-i", dev, "-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass",
    ]  # fmt: skip


def foreign_netns(theirs: str, ours: str) -> bool:
    """A namespace link (``net:[4026...]``) that is not this process's: never delay the host's own."""
    return bool(theirs) and theirs.startswith("net:[") and theirs != ours


# NFQUEUE over netlink (linux/netfilter/nfnetlink_queue.h), no library needed.
NETLINK_NETFILTER = 12
SO_RCVBUFFORCE = 33
CLONE_NEWNET = 0x40000000
NFNL_SUBSYS_QUEUE = 3
MSG_PACKET, MSG_VERDICT, MSG_CONFIG, MSG_VERDICT_BATCH = 0, 1, 2, 3
CFG_CMD, CFG_PARAMS, CFG_QUEUE_MAXLEN, CFG_MASK, CFG_FLAGS = 1, 2, 3, 4, 5
CMD_BIND, COPY_META, F_FAIL_OPEN = 1, 1, 1
ATTR_PACKET_HDR, ATTR_VERDICT_HDR, NF_ACCEPT = 1, 2, 1
NLM_F_REQUEST, NLM_F_ACK, NLMSG_ERROR = 1, 4, 2
NLMSG = struct.Struct("=IHHII")
QUEUE = 4242
QUEUE_MAXLEN = 20000


def nl_attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def nfq_message(kind: int, queue: int, attrs: bytes, seq: int = 0, flags: int = NLM_F_REQUEST) -> bytes:
    body = struct.pack("!BBH", 0, 0, queue) + attrs  # nfgenmsg: AF_UNSPEC, version 0, queue (BE)
    return NLMSG.pack(NLMSG.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, seq, 0) + body


def nfq_config(queue: int) -> list[bytes]:
    """Bind the queue, metadata only (no payload copied), a long queue, fail open when it is full."""
    ack = NLM_F_REQUEST | NLM_F_ACK
    return [
        nfq_message(MSG_CONFIG, queue, nl_attr(CFG_CMD, struct.pack("!BBH", CMD_BIND, 0, 0)), 1, ack),
        nfq_message(MSG_CONFIG, queue, nl_attr(CFG_PARAMS, struct.pack("!IB", 0, COPY_META)), 2, ack),
        nfq_message(MSG_CONFIG, queue, nl_attr(CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN)), 3, ack),
        nfq_message(
            MSG_CONFIG,
            queue,
            nl_attr(CFG_MASK, struct.pack("!I", F_FAIL_OPEN))
            + nl_attr(CFG_FLAGS, struct.pack("!I", F_FAIL_OPEN)),
            4,
            ack,
        ),
    ]


def nfq_accept_upto(queue: int, packet_id: int) -> bytes:
    """One batch verdict: accept every queued packet up to ``packet_id`` (ids grow in queue order)."""
    return nfq_message(
        MSG_VERDICT_BATCH, queue, nl_attr(ATTR_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id))
    )


def nfq_parse(buf: bytes) -> tuple[list[int], list[int]]:
    """(packet ids, netlink error codes) in one datagram; a malformed tail is ignored."""
    ids: list[int] = []
    errors: list[int] = []
    off = 0
    while off + NLMSG.size <= len(buf):
        length, kind, _, _, _ = NLMSG.unpack_from(buf, off)
        if length < NLMSG.size or off + length > len(buf):
            break
        if kind == NLMSG_ERROR and length >= NLMSG.size + 4:
            errors.append(struct.unpack_from("=i", buf, off + NLMSG.size)[0])
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | MSG_PACKET:
            at = off + NLMSG.size + 4
            while at + 4 <= off + length:
                alen, akind = struct.unpack_from("=HH", buf, at)
                if alen < 4:
                    break
                if akind & 0x7FFF == ATTR_PACKET_HDR and alen >= 8:
                    ids.append(struct.unpack_from("!I", buf, at + 4)[0])
                at += (alen + 3) & ~3
        off += (length + 3) & ~3
    return ids, errors


# ---------------------------------------------------------------- the delay


class Delayer:
    """``rtt_s`` added to every packet the given devices receive, for as long as it runs (bounded)."""

    def __init__(self, devices: Mapping[str, int], rtt_s: float, bound_s: float = STAGE_BOUND_S) -> None:
        self.pids = dict(devices)
        self.rtt_s = rtt_s
        self.deadline = time.monotonic() + bound_s
        self.socks: dict[str, socket.socket] = {}
        self.ruled: dict[str, str] = {}
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        self.packets = 0

    def start(self) -> None:
        ours = os.readlink("/proc/self/ns/net")
        for device, pid in self.pids.items():
            if not NAME.match(device) or not foreign_netns(os.readlink(f"/proc/{pid}/ns/net"), ours):
                raise LabError(f"{device} (pid {pid}) is not a scale device in a namespace of its own")
            self.socks[device] = _in_netns(pid, _bind_queue)
        for device, pid in self.pids.items():
            dev = default_dev(podman_exec(device, "ip -o -4 route show default"))
            _run(queue_rule_argv(pid, "-A", dev, QUEUE))
            self.ruled[device] = dev
        self.thread = threading.Thread(target=self._pump, name="scale-delay", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Rules out first (new packets pass at once), then everything held is released."""
        for device, dev in list(self.ruled.items()):
            for _ in range(3):  # bounded: a rule added twice by a retry goes too
                if sh(queue_rule_argv(self.pids[device], "-D", dev, QUEUE)).returncode != 0:
                    break
            del self.ruled[device]
        self.done.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
        for s in self.socks.values():
            s.close()
        self.socks.clear()

    def _pump(self) -> None:
        pending: dict[socket.socket, collections.deque[tuple[float, int]]] = {
            s: collections.deque() for s in self.socks.values()
        }
        for s in pending:
            s.setblocking(False)
        while not self.done.is_set() and time.monotonic() < self.deadline:
            due = [q[0][0] for q in pending.values() if q]
            wait = min(due) - time.monotonic() if due else 0.05
            ready, _, _ = select.select(list(pending), [], [], min(0.05, max(0.0, wait)))
            now = time.monotonic()
            for s in ready:
                for packet_id in _drain(s):
                    pending[s].append((now + self.rtt_s, packet_id))
                    self.packets += 1
            self._release(pending, time.monotonic())
        self._release(pending, float("inf"))

    @staticmethod
    def _release(pending: Mapping[socket.socket, collections.deque[tuple[float, int]]], now: float) -> None:
        for s, queue in pending.items():
            last = None
            while queue and queue[0][0] <= now:
                last = queue.popleft()[1]
            if last is not None:
                with contextlib.suppress(OSError):
                    s.send(nfq_accept_upto(QUEUE, last))


def _drain(s: socket.socket) -> list[int]:
    ids: list[int] = []
    for _ in range(10_000):  # bounded per wake-up
        try:
            buf = s.recv(65536)
        except BlockingIOError:
            break
        except OSError:  # ENOBUFS: notifications lost; a later batch verdict still releases them
            continue
        ids += nfq_parse(buf)[0]
    return ids


def _bind_queue() -> socket.socket:
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.bind((0, 0))
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    for message in nfq_config(QUEUE):
        s.send(message)
        errors = nfq_parse(s.recv(65536))[1]
        if any(errors):
            s.close()
            raise LabError(f"NFQUEUE {QUEUE} config refused: errno {errors}")
    return s


def _in_netns(pid: int, make: Any) -> socket.socket:
    """``make()`` in a thread of its own moved into the network namespace of ``pid`` (setns moves only
    the calling thread, so this process's other threads never leave the host's namespace)."""
    out: list[Any] = []

    def run() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                out.append(LabError(f"setns into pid {pid}'s network namespace: errno {ctypes.get_errno()}"))
                return
            out.append(make())
        except (OSError, LabError) as exc:
            out.append(exc)
        finally:
            os.close(fd)

    t = threading.Thread(target=run, name="scale-netns")
    t.start()
    t.join(timeout=30)
    if not out or isinstance(out[0], Exception):
        raise LabError(f"NFQUEUE in pid {pid}'s namespace: {out[0] if out else 'timed out'}")
    return out[0]


def _run(argv: list[str]) -> None:
    proc = sh(argv, 60)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(argv[:6])} ...: {proc.stderr.strip()[-300:]}")


def tcp_rtt_ms(addr: str, port: int = 22, tries: int = 3) -> float | None:
    """Median TCP connect time to ``addr`` (one round trip: SYN, SYN-ACK), in ms; None if unreachable."""
    times = []
    for _ in range(tries):
        t0 = time.perf_counter()
        try:
            with socket.create_connection((addr, port), timeout=3):
                times.append((time.perf_counter() - t0) * 1e3)
        except OSError:
            continue
    return statistics.median(times) if times else None


# ---------------------------------------------------------------- availability


class Sampler:
    """/readyz of every device in service, and Prometheus' up, every SAMPLE_S (bounded in time)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.t0 = time.monotonic()
        self.devices: dict[str, str] = {}
        self.since: dict[str, float] = {}
        self.ready: list[tuple[float, str, bool]] = []
        self.prom: list[tuple[float, str, float]] = []
        self.windows: list[tuple[float, float, str]] = []
        self.done = threading.Event()
        self.sessions: dict[str, requests.Session] = {}
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, name="scale-sampler", daemon=True)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def add(self, device: str, addr: str) -> None:
        with self.lock:
            self.devices[device] = addr
            self.since[device] = self.now()
            self.sessions[device] = requests.Session()

    @contextlib.contextmanager
    def window(self, label: str) -> Iterator[None]:
        start = self.now()
        try:
            yield
        finally:
            self.windows.append((start, self.now(), label))

    def _one(self, device: str, addr: str) -> bool:
        try:
            r = self.sessions[device].get(f"http://{addr}:8080/readyz", timeout=2)
            return r.status_code == 200
        except requests.RequestException:
            return False

    def _loop(self) -> None:
        deadline = time.monotonic() + STAGE_BOUND_S
        with ThreadPoolExecutor(max_workers=4) as pool:
            while not self.done.is_set() and not STOP.is_set() and time.monotonic() < deadline:
                with self.lock:
                    devices = dict(self.devices)
                t = self.now()
                oks = list(pool.map(lambda kv: self._one(*kv), devices.items()))
                self.ready += [(t, d, ok) for d, ok in zip(devices, oks, strict=True)]
                for row in self.lab.prom('up{job="rvm_edge"}') or []:
                    d = row["metric"].get("device", "")
                    if d in devices:
                        self.prom.append((t, d, float(row["value"][1])))
                self.done.wait(max(0.1, SAMPLE_S - (self.now() - t)))

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=30)


# ---------------------------------------------------------------- one run of a playbook


@dataclass
class Run:
    """One timed ansible-playbook run."""

    op: str
    size: int
    rtt_ms: int
    seconds: float
    rc: int
    hosts: dict[str, dict[str, int]]
    log: str
    failed_task: str = ""
    failure: str = ""
    report: dict[str, Any] | None = None
    # a rollback's devices: seconds from the service's stop to its READY=1 (out_of_service_s)
    out_of_service: dict[str, float | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def worst_out_of_service(self) -> float | None:
        values = [v for v in self.out_of_service.values() if v is not None]
        return max(values) if values else None

    def worst(self, key: str) -> float | None:
        """The largest per-host figure of the deploy summary (e.g. a rollback's to_healthy_s)."""
        values = [float(h[key]) for h in (self.report or {}).get("hosts", []) if h.get(key) not in (None, "")]
        return max(values) if values else None

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op, "size": self.size, "rtt_ms": self.rtt_ms, "seconds": round(self.seconds, 1),
            "rc": self.rc, "hosts": self.hosts, "log": self.log, "failed_task": self.failed_task,
            "failure": self.failure[:1500], "report": self.report, "out_of_service_s": self.out_of_service,
        }  # fmt: skip


def play(
    op: str, args: list[str], size: int, rtt_ms: int, timeout: float, extra_inventory: Path | None
) -> Run:
    """``ansible-playbook -i inventories/lab [-i SCALE] ARGS`` in its own process group, log kept under
    WORK/logs, a progress line every minute, bounded by ``timeout`` (then stopped, rc 124)."""
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"n{size:02d}-rtt{rtt_ms}-{op}-{int(time.time())}.log"
    report = log.with_suffix(".deploy.json")
    argv = [PLAYBOOK, "-i", LAB_INVENTORY, *(["-i", str(extra_inventory)] if extra_inventory else []), *args]
    env = {**play_env(), "RVM_DEPLOY_REPORT": str(report)}
    t0 = time.monotonic()
    rc = 124
    with log.open("w") as fh:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)  # fmt: skip
        try:
            for _ in range(int(timeout / 60) + 2):
                try:
                    rc = proc.wait(timeout=max(1.0, min(60.0, t0 + timeout - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= t0 + timeout:
                        break
                    say(f"scale: n={size} rtt {rtt_ms} ms: {op} running, {time.monotonic() - t0:.0f} s")
        finally:
            if stop_play(proc):
                rc = 124
    seconds = time.monotonic() - t0
    output = log.read_text(errors="replace")
    task, failure = first_failure(output)
    loaded = json.loads(report.read_text()) if report.exists() else None
    return Run(
        op, size, rtt_ms, seconds, rc, recap(output), str(log.relative_to(ROOT)), task, failure, loaded
    )


# ---------------------------------------------------------------- the stage


@dataclass
class Scale:
    lab: Lab
    sizes: list[int]
    version: str
    dist: Path
    rtts: list[int] = field(default_factory=lambda: list(DEFAULT_RTTS_MS))
    camera: dict[str, Any] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    server_runs: list[Run] = field(default_factory=list)
    devices: dict[str, str] = field(default_factory=dict)
    rtt: dict[str, Any] = field(default_factory=dict)
    base: str = ""
    sampler: Sampler | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def hosts_file(self) -> Path:
        return WORK / "inventory" / "hosts.yml"

    def run(self) -> None:
        self.sampler = Sampler(self.lab)
        self.sampler.thread.start()
        for size in self.sizes:
            self.grow(size)
            for rtt_ms in self.rtts:
                with self.latency(size, rtt_ms):
                    self.measure(size, rtt_ms)

    def grow(self, size: int) -> None:
        new = [d for d in device_names(size) if d not in self.devices]
        say(f"scale: n={size}: adding {', '.join(new)}")
        for d in new:
            made = sh([*LABCTL, "add", d], 300)
            if made.returncode != 0:
                raise LabError(f"labctl add {d}: {(made.stdout + made.stderr).strip()[-300:]}")
            self.devices[d] = address(d)
        self.wait_ssh(new)
        write_inventory(self.devices, self.hosts_file, camera=self.camera or None)
        self.admit(size)
        provision = self.play("provision", ["site.yml", "-l", ",".join(new)], size, 0, 900 + 150 * len(new))
        if not provision.ok:
            raise LabError(
                f"provisioning {', '.join(new)} failed: {provision.failed_task} {provision.failure[:300]}"
            )
        if not self.base:
            self.base = podman_exec(new[0], "readlink /opt/rvm-edge/current").strip().rsplit("/", 1)[-1]
        assert self.sampler is not None
        for d in new:
            self.sampler.add(d, self.devices[d])

    def wait_ssh(self, new: Sequence[str], bound_s: float = 180.0) -> None:
        """Every new device's sshd answering at its lab address before any play names it: a fresh
        container can take a few seconds to answer on an address the lab used before (a run of 20
        once found one silent for a whole connect timeout: the servers' firewall play failed)."""
        deadline = time.monotonic() + bound_s
        waiting = list(new)
        while waiting and time.monotonic() < deadline and not STOP.is_set():
            waiting = [d for d in waiting if tcp_rtt_ms(self.devices[d], tries=1) is None]
            if waiting:
                STOP.wait(1.0)
        if waiting:
            raise LabError(f"no ssh answer within {bound_s:.0f} s from {', '.join(waiting)}")
        say(f"scale: ssh answers on all {len(new)} new devices")

    def admit(self, size: int) -> None:
        """The servers admit the current scale fleet before it converges: the platform's and the backup
        server's firewalls (by inventory group), its machines and API keys on the platform, and the
        monitoring server's scrape targets (site.yml -l DEVICES runs none of the servers' plays)."""
        for op, args in (
            (
                "servers-firewall",
                ["playbooks/hardening.yml", "-l", SERVERS_FW, "--tags", "hardening_configure"],
            ),
            ("servers-platform", ["playbooks/platform_sim.yml", "--tags", "rvm_platform_sim_machines"]),
            (
                "servers-monitoring",
                ["playbooks/monitoring.yml", "-l", MONITOR, "--tags", "monitoring_server_configure"],
            ),
        ):
            run = play(op, args, size, 0, 900, self.hosts_file)
            self.server_runs.append(run)
            say(f"scale: n={size}: {op} {'ok' if run.ok else 'FAILED'} in {run.seconds:.0f} s")
            if not run.ok:
                raise LabError(f"{op}: {run.failed_task} {run.failure[:300]}")

    def play(self, op: str, args: list[str], size: int, rtt_ms: int, timeout: float) -> Run:
        say(f"scale: n={size} rtt {rtt_ms} ms: {op} ...")
        run = play(op, args, size, rtt_ms, timeout, self.hosts_file)
        self.runs.append(run)
        say(
            f"scale: n={size} rtt {rtt_ms} ms: {op} {'ok' if run.ok else f'FAILED (rc {run.rc})'} "
            f"in {run.seconds:.1f} s{f': {run.failed_task}' if run.failed_task else ''}"
        )
        return run

    def measure(self, size: int, rtt_ms: int) -> None:
        assert self.sampler is not None
        every = ",".join(sorted(self.devices))
        n = len(self.devices)
        self.play(
            "converge",
            ["site.yml", "-l", every, "-e", "rvm_converge_force=true"],
            size,
            rtt_ms,
            900 + 150 * n,
        )
        self.play("nochange", ["site.yml", "-l", every], size, rtt_ms, 600 + 30 * n)
        deploy_vars = {"rvm_edge_version": self.version, "rvm_edge_bundle_dir": str(self.dist)}
        with self.sampler.window(f"deploy n={size} rtt {rtt_ms}"):
            self.play("deploy", ["playbooks/deploy.yml", "-l", every, "-e", json.dumps(deploy_vars)], size, rtt_ms,
                      900 + 120 * n)  # fmt: skip
        with self.sampler.window(f"rollback n={size} rtt {rtt_ms}"):
            back = self.play("rollback", ["playbooks/rollback.yml", "-l", every, "-e",
                                          json.dumps({"rvm_edge_rollback_to": self.base})], size, rtt_ms, 600 + 30 * n)  # fmt: skip
        back.out_of_service = {d: device_out_of_service(d) for d in sorted(self.devices)}
        say(f"scale: n={size} rtt {rtt_ms} ms: rollback, slowest device out of service (stop to ready, "
            f"its own clock): {back.worst_out_of_service} s")  # fmt: skip

    @contextlib.contextmanager
    def latency(self, size: int, rtt_ms: int) -> Iterator[None]:
        """The added round trip for the block (none for 0), measured before anything is timed."""
        delayer = None
        try:
            if rtt_ms:
                pids = {d: _pid(d) for d in self.devices}
                delayer = Delayer(pids, rtt_ms / 1000)
                delayer.start()
            measured = {d: tcp_rtt_ms(a) for d, a in self.devices.items()}
            got = [v for v in measured.values() if v is not None]
            median = statistics.median(got) if got else None
            self.rtt[f"n{size}.rtt{rtt_ms}"] = {"per_device_ms": measured, "median_ms": median}
            say(f"scale: n={size}: added round trip {rtt_ms} ms, measured (TCP connect, median) "
                f"{median if median is None else round(median, 1)} ms")  # fmt: skip
            if rtt_ms and (median is None or median < 0.8 * rtt_ms):
                raise LabError(f"the {rtt_ms} ms delay did not take: measured {median} ms")
            yield
        finally:
            if delayer is not None:
                delayer.stop()
                say(f"scale: delay removed ({delayer.packets} packets delayed)")

    # -- cleanup ---------------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Every scale device, its ZeroTier member and backup account gone; the servers set back
        from inventories/lab. Every step is tried whatever the others did."""
        say(f"scale: cleaning up {len(self.devices)} scale devices")
        if self.sampler is not None:
            self.sampler.stop()
        names = sorted(set(self.devices) | set(leftover_devices()))
        nodes = {d: node_id(d) for d in names}
        for d in names:
            gone = sh([*LABCTL, "remove", d], 300)
            if gone.returncode != 0:
                self.notes.append(f"labctl remove {d}: {(gone.stdout + gone.stderr).strip()[-200:]}")
        self.notes += delete_members(set(names), {n for n in nodes.values() if n})
        for d in names:
            with contextlib.suppress(LabError):
                podman_exec(BACKUP, backup_cleanup_script(d), 120)
        if names:
            for op, args in (
                (
                    "reset-firewall",
                    ["playbooks/hardening.yml", "-l", SERVERS_FW, "--tags", "hardening_configure"],
                ),
                (
                    "reset-monitoring",
                    ["playbooks/monitoring.yml", "-l", MONITOR, "--tags", "monitoring_server_configure"],
                ),
            ):
                run = play(op, args, 0, 0, 900, None)
                self.server_runs.append(run)
                say(f"scale: {op} from inventories/lab {'ok' if run.ok else 'FAILED'} in {run.seconds:.0f} s")
                if not run.ok:
                    self.notes.append(f"{op} failed: {run.failed_task}")
        left = leftover_devices()
        if left:
            self.notes.append(f"left behind: {left}")
        say(f"scale: cleanup done; {'nothing left' if not left else f'LEFT: {left}'}")


OUT_OF_SERVICE_PROPS = ("ActiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic")


def out_of_service_s(show: str) -> float | None:
    """Seconds from rvm-edge leaving ``active`` (its stop began) to entering it again (READY=1 of a
    Type=notify unit), from ``systemctl show`` on the device: the device's own time out of service
    in its last restart, free of the play's lockstep (linear strategy: every task waits for the
    slowest host) and of the control node's round trips. None when systemd has no such pair."""
    props = dict(line.split("=", 1) for line in show.splitlines() if "=" in line)
    try:
        left, back = (int(props[k]) for k in OUT_OF_SERVICE_PROPS)
    except (KeyError, ValueError):
        return None
    return round((back - left) / 1e6, 2) if 0 < left < back else None


def device_out_of_service(device: str) -> float | None:
    try:
        show = podman_exec(device, "systemctl show -p " + " -p ".join(OUT_OF_SERVICE_PROPS) + " rvm-edge")
    except LabError:
        return None
    return out_of_service_s(show)


def _pid(device: str) -> int:
    proc = sh(["podman", "inspect", "-f", "{{.State.Pid}}", device])
    if proc.returncode != 0 or not proc.stdout.strip().isdigit():
        raise LabError(f"{device}: no running container ({proc.stderr.strip()[-200:]})")
    return int(proc.stdout.strip())


def leftover_devices() -> list[str]:
    proc = sh(["podman", "ps", "-a", "--format", "{{.Names}}"])
    return sorted(n for n in proc.stdout.split() if NAME.match(n))


def node_id(device: str) -> str:
    """The device's ZeroTier node id (the first 10 hex digits of its identity), '' when it has none."""
    proc = sh(
        ["podman", "exec", device, "sh", "-c", "cut -c1-10 /var/lib/zerotier-one/identity.public 2>/dev/null"]
    )
    text = proc.stdout.strip()
    return text if re.fullmatch(r"[0-9a-f]{10}", text) else ""


def backup_cleanup_script(device: str, made_here: re.Pattern[str] = NAME) -> str:
    """The device's sftp account and repository on the backup server (roles/backup: rb-<host>,
    /srv/restic/<host>); refused for any name but one of the devices the suite makes itself
    (``made_here``: the scale devices by default; the week's new device passes its own)."""
    if not made_here.match(device):
        raise LabError(f"{device} is not a device this suite made")
    return f"userdel rb-{device} 2>/dev/null; rm -rf /srv/restic/{device}; true"


def delete_members(names: set[str], nodes: set[str]) -> list[str]:
    """The scale devices' members at the ZeroTier Central LAB STAND-IN, by name or node id."""
    notes: list[str] = []
    try:
        token = (ROOT / ".lab" / "zerotier-central-token").read_text().strip()
        headers = {"Authorization": f"token {token}"}
        members = requests.get(f"{CENTRAL}/network/{NETWORK}/member", headers=headers, timeout=10).json()
        for m in members:
            if m.get("name") in names or m.get("nodeId") in nodes:
                r = requests.delete(
                    f"{CENTRAL}/network/{NETWORK}/member/{m['nodeId']}", headers=headers, timeout=10
                )
                if r.status_code >= 400:
                    notes.append(f"member {m['nodeId']}: {r.status_code}")
    except (OSError, ValueError, requests.RequestException) as exc:
        notes.append(f"ZeroTier members not deleted: {exc}")
    return notes


# ---------------------------------------------------------------- figures


def add_figures(scale: Scale, results: Results) -> None:
    by = {(r.op, r.size, r.rtt_ms): r for r in scale.runs}
    figures: list[Figure] = []
    for (op, size, rtt_ms), run in sorted(
        by.items(), key=lambda kv: (OPS.index(kv[0][0]) if kv[0][0] in OPS else -1, kv[0][1], kv[0][2])
    ):
        note = f"rc {run.rc}" + (f"; failed: {run.failed_task}" if run.failed_task else "")
        if op == "provision":
            new = sum(1 for h in run.hosts if NAME.match(h))
            figures.append(Figure(f"scale.provision.n{size}", f"n={size}: first converge of the {new} new devices",
                                  run.seconds, "s", stage=STAGE, note=note))  # fmt: skip
            figures.append(Figure(f"scale.provision_per_device.n{size}", f"n={size}: first converge per new device",
                                  run.seconds / max(1, new), "s/device", stage=STAGE, note="wall time / new devices, in parallel"))  # fmt: skip
            continue
        target = NOCHANGE_TARGET_S if op == "nochange" else None
        figures.append(Figure(f"scale.{op}.n{size}.rtt{rtt_ms}", f"n={size}, {rtt_label(rtt_ms)}: {OP_TITLE[op]}",
                              run.seconds, "s", target, stage=STAGE, note=note))  # fmt: skip
        if op == "rollback":
            figures.append(Figure(f"scale.rollback_device.n{size}.rtt{rtt_ms}",
                                  f"n={size}, {rtt_label(rtt_ms)}: rollback, slowest device to healthy",
                                  run.worst("to_healthy_s"), "s", ROLLBACK_TARGET_S, stage=STAGE,
                                  note="rvm_deploy_summary to_healthy_s: drain to ready, as the play sees it (each task waits for the slowest host)"))  # fmt: skip
            figures.append(Figure(f"scale.rollback_out_of_service.n{size}.rtt{rtt_ms}",
                                  f"n={size}, {rtt_label(rtt_ms)}: rollback, slowest device out of service",
                                  run.worst_out_of_service, "s", ROLLBACK_TARGET_S, stage=STAGE,
                                  note="stop to ready on the device's own clock (systemd's timestamps)"))  # fmt: skip
    for op in OPS:
        for rtt_ms in scale.rtts:
            pts = [(float(s), r.seconds) for (o, s, t), r in by.items() if o == op and t == rtt_ms and r.ok]
            figures.append(Figure(f"scale.{op}.slope.rtt{rtt_ms}", f"{rtt_label(rtt_ms)}: {op} cost per added device",
                                  slope(pts), "s/device", stage=STAGE,
                                  note=f"least squares over n={sorted(int(x) for x, _ in pts)}"
                                  + ("" if len(pts) > 1 else "; needs two sizes")))  # fmt: skip
    for key, value in scale.rtt.items():
        figures.append(Figure(f"scale.rtt_ms.{key}", f"{key}: round trip control node -> device (TCP connect, median)",
                              value["median_ms"], "ms", stage=STAGE))  # fmt: skip
    failed = [f"{r.op} n={r.size} rtt {r.rtt_ms}" for r in [*scale.runs, *scale.server_runs] if not r.ok]
    if scale.camera:
        figures.append(Figure("scale.device_fps", "scale devices' camera rate (PRODTEST_SCALE_FPS)",
                              float(scale.camera.get("fps", 0.0)), "fps", stage=STAGE,
                              note="the lab's rvm_edge_source at this rate; the fleet's own devices keep theirs"))  # fmt: skip
    figures.append(Figure("scale.failed_runs", "playbook runs that failed", float(len(failed)), "count", 0,
                          stage=STAGE, note="; ".join(failed)[:300]))  # fmt: skip
    figures += availability_figures(scale)
    results.add(*figures)
    add_plots(scale, results)


def availability_figures(scale: Scale) -> list[Figure]:
    s = scale.sampler
    if s is None:
        return []
    windows = [(a, b) for a, b, _ in s.windows]
    whole = availability(s.ready)
    outside = availability(s.ready, windows)
    prom = {d: (sum(1 for _, dd, v in s.prom if dd == d and v >= 1), sum(1 for _, dd, _ in s.prom if dd == d))
            for d in whole}  # fmt: skip
    out = [
        Figure(
            f"scale.avail.{d}",
            f"{d}: ready (/readyz), whole stage",
            pct(whole[d]),
            "%",
            AVAIL_TARGET,
            ">=",
            stage=STAGE,
            note=f"outside deploy/rollback: {_p(pct(outside.get(d)))} %; Prometheus up {_p(pct(prom[d]))} %;"
            f" {whole[d][1]} samples",
        )
        for d in sorted(whole)
    ]
    out += [
        Figure("scale.avail.fleet", "fleet: ready, whole stage (device-samples)", pct(fleet(whole)), "%",
               AVAIL_TARGET, ">=", stage=STAGE, note="includes each device's own restart in every deploy and rollback"),
        Figure("scale.avail.fleet_outside", "fleet: ready outside the deploy and rollback runs", pct(fleet(outside)),
               "%", AVAIL_TARGET, ">=", stage=STAGE),
        Figure("scale.avail.prom_fleet", "fleet: Prometheus up{job=rvm_edge}, whole stage", pct(fleet(prom)), "%",
               AVAIL_TARGET, ">=", stage=STAGE, note=f"instant query every {SAMPLE_S:g} s"),
    ]  # fmt: skip
    return out


def _p(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def add_plots(scale: Scale, results: Results) -> None:
    for op in OPS:
        target = NOCHANGE_TARGET_S if op == "nochange" else None
        plot = Plot(f"Fleet scale: {OP_TITLE[op]} vs devices", "devices (rvm-scale-NN)", "wall time (s)", target,
                    "30 s budget (DESIGN §9)" if target else "target")  # fmt: skip
        for rtt_ms in scale.rtts:
            label = rtt_label(rtt_ms)
            pts = sorted((float(r.size), r.seconds) for r in scale.runs if r.op == op and r.rtt_ms == rtt_ms)
            plot.lines[label] = pts
            if op == "rollback":
                dev = [(float(r.size), r.worst("to_healthy_s") or 0.0) for r in scale.runs
                       if r.op == op and r.rtt_ms == rtt_ms]  # fmt: skip
                plot.lines[f"slowest device to healthy, {label}"] = sorted(dev)
                out = [(float(r.size), r.worst_out_of_service or 0.0) for r in scale.runs
                       if r.op == op and r.rtt_ms == rtt_ms]  # fmt: skip
                plot.lines[f"slowest device out of service, {label}"] = sorted(out)
        if op == "rollback":
            plot.target, plot.target_label = ROLLBACK_TARGET_S, "10 s per device"
        results.plots[f"scale-{op}"] = plot
    prov = Plot(
        "Fleet scale: first converge per new device", "devices (rvm-scale-NN)", "s per new device", None
    )
    prov.lines["provision"] = sorted(
        (float(r.size), r.seconds / max(1, sum(1 for h in r.hosts if NAME.match(h))))
        for r in scale.runs
        if r.op == "provision"
    )
    results.plots["scale-provision"] = prov
    if scale.sampler is not None:
        s = scale.sampler
        whole = availability(s.ready)
        outside = availability(s.ready, [(a, b) for a, b, _ in s.windows])
        names = sorted(whole)
        avail = Plot("Fleet scale: availability per device (/readyz)", "device number (rvm-scale-NN)",
                     "ready (%)", AVAIL_TARGET, "99.9 %")  # fmt: skip
        avail.lines["whole stage"] = [(float(i + 1), pct(whole[d]) or 0.0) for i, d in enumerate(names)]
        avail.lines["outside deploy/rollback"] = [
            (float(i + 1), pct(outside.get(d)) or 0.0) for i, d in enumerate(names)
        ]
        results.plots["scale-availability"] = avail


def raw(scale: Scale) -> dict[str, Any]:
    s = scale.sampler
    return {
        "sizes": scale.sizes,
        "rtts_ms": scale.rtts,
        "device_fps": scale.camera.get("fps"),
        "version": scale.version,
        "base": scale.base,
        "devices": scale.devices,
        "runs": [r.to_json() for r in scale.runs],
        "server_runs": [r.to_json() for r in scale.server_runs],
        "rtt": scale.rtt,
        "delay": "NFQUEUE at each scale device's ingress (its own network namespace); the kernel has no sch_netem",
        "sample_s": SAMPLE_S,
        "windows": []
        if s is None
        else [{"from_s": round(a, 1), "to_s": round(b, 1), "what": w} for a, b, w in s.windows],
        "in_service_since_s": {} if s is None else {d: round(t, 1) for d, t in s.since.items()},
        "readyz": {} if s is None else _series(s.ready),
        "prometheus_up": {} if s is None else _series(s.prom),
        "notes": scale.notes,
    }


def _series(samples: Sequence[tuple[float, str, Any]]) -> dict[str, list[list[float]]]:
    out: dict[str, list[list[float]]] = {}
    for t, d, v in samples:
        out.setdefault(d, []).append([round(t, 1), float(v)])
    return out


def run_fleet_scale(lab: Lab, prof: Profile, results: Results) -> None:
    sizes = scale_sizes(os.environ.get("PRODTEST_SCALE_SIZES"), prof.name)
    rtts = scale_rtts(os.environ.get("PRODTEST_SCALE_RTTS"))
    camera = camera_source(scale_fps(os.environ.get("PRODTEST_SCALE_FPS")))
    clash = [d for d in lab.devices if NAME.match(d)]
    if clash:
        raise LabError(f"{clash} are devices of inventories/lab: the scale stage makes its own")
    left = leftover_devices()
    if left:
        raise LabError(f"scale devices from an earlier run exist: {left}; `lab/labctl.py remove` them first")
    version = f"{app_version()}.post{int(time.time())}"
    dist = WORK / "dist"
    say(f"scale: sizes {sizes}, round trips added {rtts} ms, scale devices at {camera['fps']:g} fps; "
        f"building {version} (the release deployed)")  # fmt: skip
    build_release(version, dist)
    scale = Scale(lab, sizes, version, dist, rtts, camera)
    try:
        scale.run()
    finally:
        try:
            scale.cleanup()
        finally:
            results.raw[STAGE] = raw(scale)
            add_figures(scale, results)
