"""The fleet-scale stage's pure parts (prodtest.scale): sizes, the generated inventory (and that its
plain ssh outranks the lab's ``podman exec``), slope and availability arithmetic, the NFQUEUE messages,
and that the delay's commands stay inside a scale device's own network namespace."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prodtest.figures import Results
from prodtest.lab import LabError
from prodtest.scale import (
    ATTR_PACKET_HDR,
    NFNL_SUBSYS_QUEUE,
    NLMSG,
    NLMSG_ERROR,
    SSH_ARGS,
    Run,
    Scale,
    add_figures,
    availability,
    backup_cleanup_script,
    camera_source,
    default_dev,
    device_names,
    fleet,
    foreign_netns,
    in_window,
    int_list,
    inventory,
    nfq_accept_upto,
    nfq_config,
    nfq_parse,
    nl_attr,
    out_of_service_s,
    pct,
    queue_rule_argv,
    recap,
    rtt_label,
    scale_fps,
    scale_rtts,
    scale_sizes,
    slope,
    write_inventory,
)


def test_sizes_default_by_profile_and_from_the_environment() -> None:
    assert scale_sizes(None, "quick") == [3]
    assert scale_sizes("", "full") == [3, 10, 20]
    assert scale_sizes(" 2, 5 ", "quick") == [2, 5]


@pytest.mark.parametrize("bad", ["10,3", "3,3", "0", "31", "three", ","])
def test_sizes_must_grow_and_stay_bounded(bad: str) -> None:
    with pytest.raises(LabError):
        scale_sizes(bad, "quick")


def test_device_names_are_the_scale_fleet_only() -> None:
    assert device_names(3) == ["rvm-scale-01", "rvm-scale-02", "rvm-scale-03"]


def test_inventory_lists_scale_devices_with_plain_ssh_at_their_lab_address(tmp_path: Path) -> None:
    path = write_inventory({"rvm-scale-02": "10.89.0.12", "rvm-scale-01": "10.89.0.11"}, tmp_path / "h.yml")
    data = yaml.safe_load(path.read_text())
    hosts = data["all"]["children"]["rvm_devices"]["hosts"]
    assert list(hosts) == ["rvm-scale-01", "rvm-scale-02"]
    assert hosts["rvm-scale-01"]["ansible_host"] == "10.89.0.11"
    assert "ProxyCommand" not in hosts["rvm-scale-01"]["ansible_ssh_common_args"]
    assert Path(hosts["rvm-scale-01"]["ansible_ssh_private_key_file"]).is_absolute()
    assert set(data["all"]["children"]) == {"rvm_devices"}  # the servers come from inventories/lab


@pytest.mark.parametrize("name", ["rvm-lab-01", "rvm-monitor", "rvm-scale-1"])
def test_inventory_refuses_anything_but_a_scale_device(name: str) -> None:
    with pytest.raises(LabError):
        inventory({name: "10.89.0.5"})


@pytest.mark.skipif(
    not (Path(sys.executable).parent / "ansible-inventory").exists(), reason="no ansible here"
)
def test_host_vars_outrank_the_labs_podman_exec_group_vars(tmp_path: Path) -> None:
    """As with ``-i inventories/lab -i SCALE``: the lab's group_vars/all say podman exec; ours win."""
    lab = tmp_path / "lab"
    (lab / "group_vars" / "all").mkdir(parents=True)
    (lab / "hosts.yml").write_text("all:\n  children:\n    rvm_devices:\n      hosts:\n        rvm-lab-01:\n")
    (lab / "group_vars" / "all" / "main.yml").write_text(
        'ansible_ssh_common_args: -o ProxyCommand="podman exec -i %h /usr/sbin/sshd -i"\n'
        'ansible_ssh_private_key_file: "{{ inventory_dir }}/../../.lab/ssh/id_ed25519"\n'
    )
    (lab / "group_vars" / "rvm_devices.yml").write_text("rvm_edge_version: 0.1.0\n")
    scale = write_inventory({"rvm-scale-01": "10.89.0.11"}, tmp_path / "scale" / "hosts.yml", Path("/k/id"))
    exe = Path(sys.executable).parent / "ansible-inventory"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    proc = subprocess.run(
        [str(exe), "-i", str(lab), "-i", str(scale), "--host", "rvm-scale-01"],
        capture_output=True, text=True, cwd=tmp_path, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    hv = json.loads(proc.stdout)
    assert hv["ansible_ssh_common_args"] == SSH_ARGS
    assert hv["ansible_ssh_private_key_file"] == "/k/id"
    assert hv["rvm_edge_version"] == "0.1.0"  # the lab's group_vars still apply


def test_slope_is_least_squares_seconds_per_device() -> None:
    assert slope([(3, 30.0), (10, 65.0), (20, 115.0)]) == pytest.approx(5.0)
    assert slope([(3, 10.0), (10, 12.0), (20, 20.0)]) == pytest.approx(88 / 146)
    assert slope([(3, 30.0)]) is None
    assert slope([(3, 30.0), (3, 40.0)]) is None


def test_availability_whole_and_outside_the_deploy_windows() -> None:
    samples = [(float(t), "a", not 10 <= t <= 12) for t in range(0, 100)] + [
        (float(t), "b", True) for t in range(0, 100)
    ]
    whole = availability(samples)
    assert whole == {"a": (97, 100), "b": (100, 100)}
    outside = availability(samples, [(9.5, 13.5)])
    assert outside == {"a": (96, 96), "b": (96, 96)}
    assert pct(whole["a"]) == pytest.approx(97.0)
    assert pct(fleet(whole)) == pytest.approx(98.5)
    assert pct(fleet(outside)) == 100.0
    assert pct(None) is None and pct((0, 0)) is None


def test_window_edges_count_as_inside() -> None:
    assert in_window(5.0, [(5.0, 6.0)]) and in_window(6.0, [(5.0, 6.0)])
    assert not in_window(6.01, [(5.0, 6.0)]) and not in_window(1.0, [])


def test_recap_reads_each_hosts_counts() -> None:
    out = (
        "PLAY RECAP *****\n"
        "rvm-scale-01               : ok=12   changed=3    unreachable=0    failed=0    skipped=4    rescued=0    ignored=0\n"
        "rvm-scale-02               : ok=5    changed=0    unreachable=1    failed=2    skipped=0    rescued=0    ignored=0\n"
    )
    assert recap(out) == {
        "rvm-scale-01": {"ok": 12, "changed": 3, "unreachable": 0, "failed": 0},
        "rvm-scale-02": {"ok": 5, "changed": 0, "unreachable": 1, "failed": 2},
    }


def test_the_delay_rule_runs_only_in_the_device_namespace_and_fails_open() -> None:
    argv = queue_rule_argv(4321, "-A", "eth0", 4242)
    assert argv[:3] == ["nsenter", "--target=4321", "--net"]
    assert argv[3] == "iptables-legacy"
    assert argv[argv.index("-t") + 1] == "mangle" and "PREROUTING" in argv
    assert argv[argv.index("-i") + 1] == "eth0" and argv[-1] == "--queue-bypass"
    for bad in (0, 1):
        with pytest.raises(LabError):
            queue_rule_argv(bad, "-A", "eth0", 4242)
    with pytest.raises(LabError):
        queue_rule_argv(4321, "-F", "eth0", 4242)


def test_never_the_hosts_own_namespace() -> None:
    assert foreign_netns("net:[4026532999]", "net:[4026531840]")
    assert not foreign_netns("net:[4026531840]", "net:[4026531840]")
    assert not foreign_netns("", "net:[4026531840]")


def test_default_dev_from_the_devices_route() -> None:
    assert default_dev("default via 10.89.0.1 dev eth0 proto static metric 100") == "eth0"
    with pytest.raises(LabError):
        default_dev("")


def test_backup_cleanup_names_only_the_scale_devices_account() -> None:
    script = backup_cleanup_script("rvm-scale-07")
    assert "userdel rb-rvm-scale-07" in script and "rm -rf /srv/restic/rvm-scale-07;" in script
    with pytest.raises(LabError):
        backup_cleanup_script("rvm-lab-01")
    week = re.compile(r"rvm-lab-05$")  # the week's new device passes its own name
    assert "userdel rb-rvm-lab-05" in backup_cleanup_script("rvm-lab-05", week)
    with pytest.raises(LabError):
        backup_cleanup_script("rvm-lab-01", week)


def test_nfqueue_messages() -> None:
    bind = nfq_config(4242)[0]
    length, kind, flags, seq, _ = NLMSG.unpack_from(bind)
    assert length == len(bind) and kind == (NFNL_SUBSYS_QUEUE << 8) | 2 and flags == 5 and seq == 1
    assert struct.unpack_from("!H", bind, 18)[0] == 4242  # nfgenmsg res_id, big-endian
    verdict = nfq_accept_upto(4242, 77)
    assert NLMSG.unpack_from(verdict)[1] == (NFNL_SUBSYS_QUEUE << 8) | 3
    assert verdict[-8:] == struct.pack("!II", 1, 77)  # NF_ACCEPT up to id 77
    assert len(nl_attr(2, b"\x01\x02\x03\x04\x05")) == 12  # padded to 4


def test_nfqueue_parse_packets_and_errors() -> None:
    def packet(pid: int) -> bytes:
        body = struct.pack("!BBH", 2, 0, 4242) + nl_attr(ATTR_PACKET_HDR, struct.pack("!IHB", pid, 0x800, 0))
        return NLMSG.pack(NLMSG.size + len(body), NFNL_SUBSYS_QUEUE << 8, 0, 0, 0) + body

    err = NLMSG.pack(NLMSG.size + 4, NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -1)
    assert nfq_parse(packet(5) + packet(6) + err) == ([5, 6], [-1])
    assert nfq_parse(packet(5)[:-3]) == ([], [])  # torn: ignored


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("iptables-legacy"),
    reason="needs root, unshare and iptables-legacy",
)
def test_the_delay_adds_its_round_trip_in_a_scratch_namespace() -> None:
    """The delayer against the kernel: a private network namespace, loopback only, port 5599 queued."""
    script = (
        "import socket,subprocess,time,os\n"
        "from prodtest.scale import Delayer\n"
        "subprocess.run(['ip','link','set','lo','up'],check=True)\n"
        "subprocess.run('iptables-legacy -w 5 -t mangle -A PREROUTING -i lo -p tcp --dport 5599 -j NFQUEUE"
        " --queue-num 4242 --queue-bypass',shell=True,check=True)\n"
        "d=Delayer({},0.05,30)\n"
        "from prodtest.scale import _bind_queue\n"
        "import threading\n"
        "d.socks['x']=_bind_queue(); d.thread=threading.Thread(target=d._pump,daemon=True); d.thread.start()\n"
        "srv=socket.socket(); srv.bind(('127.0.0.1',5599)); srv.listen(5)\n"
        "t=time.perf_counter(); socket.create_connection(('127.0.0.1',5599)).close(); ms=(time.perf_counter()-t)*1e3\n"
        "d.done.set(); d.thread.join(5)\n"
        "print(round(ms,1), d.packets)\n"
    )
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", script],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], timeout=60, check=False,
    )  # fmt: skip
    if proc.returncode != 0 and "NFQUEUE" in proc.stderr and "No chain" in proc.stderr:
        pytest.skip("this kernel has no NFQUEUE target")
    assert proc.returncode == 0, proc.stderr
    ms, packets = proc.stdout.split()
    assert 45 <= float(ms) < 1000 and int(packets) >= 1


def test_out_of_service_is_the_restart_on_the_devices_own_clock() -> None:
    """From `systemctl show` after a rollback: stop began 4 016 123 us before READY=1 came."""
    show = "ActiveExitTimestampMonotonic=81234567890\nActiveEnterTimestampMonotonic=81238584013\n"
    assert out_of_service_s(show) == 4.02


@pytest.mark.parametrize(
    "show",
    [
        "ActiveExitTimestampMonotonic=0\nActiveEnterTimestampMonotonic=81238584013\n",  # never stopped
        "ActiveExitTimestampMonotonic=81238584013\nActiveEnterTimestampMonotonic=81234567890\n",  # not back
        "ActiveEnterTimestampMonotonic=81238584013\n",
        "ActiveExitTimestampMonotonic=n/a\nActiveEnterTimestampMonotonic=1\n",
        "",
    ],
)
def test_no_restart_pair_gives_no_figure(show: str) -> None:
    assert out_of_service_s(show) is None


def test_round_trips_keep_their_order_and_default_to_none_then_100() -> None:
    assert scale_rtts(None) == [0, 100]
    assert scale_rtts(" ") == [0, 100]
    assert scale_rtts("100,0") == [100, 0]
    assert scale_rtts("50") == [50]


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("100,100", "once per size"),
        ("-5", "0..1000"),
        ("2000", "0..1000"),
        ("fast", "whole numbers"),
        (",", "at least one"),
    ],
)
def test_round_trips_refuse_what_cannot_be_measured(bad: str, says: str) -> None:
    with pytest.raises(LabError, match="PRODTEST_SCALE_RTTS") as err:
        scale_rtts(bad)
    assert says in str(err.value)


def test_int_list_names_the_setting_in_its_error() -> None:
    assert int_list("X", "1, 2,3") == [1, 2, 3]
    with pytest.raises(LabError, match=r"^X='1,a': expected whole numbers"):
        int_list("X", "1,a")


def test_camera_rate_defaults_low_and_is_bounded() -> None:
    assert scale_fps(None) == 0.2
    assert scale_fps("1.5") == 1.5
    for bad in ("0", "-1", "31", "fast"):
        with pytest.raises(LabError, match="PRODTEST_SCALE_FPS"):
            scale_fps(bad)


def test_scale_devices_get_the_labs_camera_at_the_scale_rate(tmp_path: Path) -> None:
    """The camera is copied from the lab's group_vars (the one place it is written), rate replaced."""
    camera = camera_source(0.2)
    lab = yaml.safe_load(
        (Path(__file__).parents[2] / "inventories/lab/group_vars/rvm_devices.yml").read_text()
    )
    assert camera == {**lab["rvm_edge_source"], "fps": 0.2}
    assert lab["rvm_edge_source"]["fps"] != 0.2  # the fleet's own devices keep their rate
    path = write_inventory({"rvm-scale-01": "10.89.0.11"}, tmp_path / "h.yml", camera=camera)
    host = yaml.safe_load(path.read_text())["all"]["children"]["rvm_devices"]["hosts"]["rvm-scale-01"]
    assert host["rvm_edge_source"] == camera
    plain = yaml.safe_load(write_inventory({"rvm-scale-01": "10.89.0.11"}, tmp_path / "p.yml").read_text())
    assert "rvm_edge_source" not in plain["all"]["children"]["rvm_devices"]["hosts"]["rvm-scale-01"]


def test_camera_source_says_which_file_lacks_it(tmp_path: Path) -> None:
    bad = tmp_path / "rvm_devices.yml"
    bad.write_text("rvm_edge_version: 1\n")
    with pytest.raises(LabError, match=rf"{bad}: no rvm_edge_source"):
        camera_source(0.2, bad)
    bad.write_text("rvm_edge_source: folder\n")
    with pytest.raises(LabError, match="expected a mapping"):
        camera_source(0.2, bad)


def test_rtt_labels() -> None:
    assert rtt_label(0) == "no added latency"
    assert rtt_label(100) == "+100 ms RTT"


def test_figure_titles_name_the_added_latency_only_where_there_is_one(tmp_path: Path) -> None:
    """A run without added latency is titled so, never "+0 ms RTT"."""
    scale = Scale(lab=None, sizes=[2, 4], version="1.0.0", dist=tmp_path, rtts=[0, 100])  # type: ignore[arg-type]
    scale.runs = [Run("nochange", n, rtt, 10.0 + n, 0, {}, "") for n in (2, 4) for rtt in (0, 100)]
    results = Results(profile="quick", started="now")
    add_figures(scale, results)
    titles = {f.key: f.title for f in results.figures}
    assert titles["scale.nochange.n2.rtt0"].startswith("n=2, no added latency: ")
    assert titles["scale.nochange.n4.rtt100"].startswith("n=4, +100 ms RTT: ")
    assert titles["scale.nochange.slope.rtt0"].startswith("no added latency: ")
    assert not [t for t in titles.values() if "+0 ms" in t]
