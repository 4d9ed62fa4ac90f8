"""rvm-fleet end to end against tiny playbooks on localhost (ansible_connection=local), no lab.

Each test builds a throwaway project (ansible.cfg, an inventory of local "devices", playbooks at
the paths the CLI runs) and drives the installed console script as an operator would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rvm_fleet.prometheus import PrometheusClient
from test_prometheus import prom  # noqa: F401 - the fixture: a real Prometheus scraping dev-a, dev-b

RVM_FLEET = [sys.executable, "-m", "rvm_fleet.cli"]

DEPLOY = """\
# Test double of playbooks/deploy.yml: its three plays, the sorting one named as there.
- name: Sort the devices (in service or new)
  hosts: rvm_devices
  gather_facts: false
  # group_by lists hosts as their results come in, in any order: reversed here, so a canary that is
  # not the inventory's first device in service shows
  order: reverse_inventory
  tasks:
    - name: Put the device in rvm_edge_in_service or rvm_edge_new
      ansible.builtin.group_by:
        key: "{{ 'rvm_edge_new' if new | bool else 'rvm_edge_in_service' }}"
      changed_when: false

- name: Install on new devices (all in one batch)
  hosts: "{{ groups['rvm_devices'] | select('in', groups['rvm_edge_new'] | default([])) | list }}"
  gather_facts: false
  max_fail_percentage: "{{ rvm_edge_deploy_max_fail_percentage | default(0) }}"
  tasks: &deploy
    - name: Install {{ rvm_edge_version }}
      ansible.builtin.copy:
        content: "{{ rvm_edge_version }}\\n"
        dest: "{{ out }}/{{ inventory_hostname }}.version"
        mode: "0644"
    - name: Health gate
      ansible.builtin.assert:
        that: not (broken | default(false) | bool)
        fail_msg: "{{ inventory_hostname }} never got ready"

- name: Deploy to devices in service (a canary, then batches)
  hosts: "{{ groups['rvm_devices'] | select('in', groups['rvm_edge_in_service'] | default([])) | list }}"
  gather_facts: false
  serial: "{{ rvm_edge_deploy_serial | default([1, '100%']) }}"
  max_fail_percentage: "{{ rvm_edge_deploy_max_fail_percentage | default(0) }}"
  tasks: *deploy
"""

SITE = """\
- name: Converge (waits on a file, so a test can cancel it mid-run)
  hosts: rvm_devices
  gather_facts: false
  tasks:
    - name: Wait for the go file
      ansible.builtin.wait_for:
        path: "{{ out }}/go"
        timeout: 120
    - name: After the wait
      ansible.builtin.file:
        path: "{{ out }}/{{ inventory_hostname }}.after"
        state: touch
        mode: "0644"
"""


def make_project(
    tmp: Path,
    broken: tuple[str, ...] = (),
    devices: int = 3,
    names: tuple[str, ...] = (),
    new: tuple[str, ...] = (),
) -> Path:
    out = tmp / "out"
    out.mkdir()
    (tmp / "ansible.cfg").write_text("[defaults]\ninventory = hosts.ini\nretry_files_enabled = false\n")
    lines = ["[rvm_devices]"]
    for host in names or [f"dev{n}" for n in range(1, devices + 1)]:
        lines.append(f"{host} broken={host in broken} new={host in new}")
    lines += [
        "[all:vars]",
        "ansible_connection=local",
        f"ansible_python_interpreter={sys.executable}",
        f"out={out}",
    ]
    (tmp / "hosts.ini").write_text("\n".join(lines) + "\n")
    (tmp / "playbooks").mkdir()
    (tmp / "playbooks" / "deploy.yml").write_text(DEPLOY)
    (tmp / "site.yml").write_text(SITE)
    (tmp / "dist").mkdir()
    (tmp / "dist" / "rvm-edge-1.2.0-x86_64.tar.gz").write_bytes(b"")
    return tmp


def cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RVM_FLEET_PROJECT": str(project)}
    return subprocess.run(
        [*RVM_FLEET, *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def history(project: Path) -> list[dict]:
    return json.loads(cli(project, "history", "--json").stdout)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path)


def test_deploy_success_json_has_batches_and_devices(project: Path) -> None:
    res = cli(project, "deploy", "1.2.0", "--json")
    assert res.returncode == 0, res.stderr
    run = json.loads(res.stdout)
    assert run["status"] == "successful" and run["exit_code"] == 0
    assert run["detail"]["extravars"] == {"rvm_edge_version": "1.2.0"}
    # serial [1, 100%]: dev1 alone, then the other two
    assert [b["hosts"] for b in run["detail"]["batches"]] == [["dev1"], ["dev2", "dev3"]]
    assert {d["host"]: d["state"] for d in run["detail"]["devices"]} == dict.fromkeys(
        ("dev1", "dev2", "dev3"), "changed"
    )
    assert (project / "out" / "dev3.version").read_text() == "1.2.0\n"
    assert (project / ".cache/rvm-fleet/artifacts" / run["ident"] / "job_events").is_dir()


def test_new_devices_install_first_in_one_batch_then_the_canary(tmp_path: Path) -> None:
    """deploy.yml's sorting play opens no batch: the new devices are batch 1, all together, then the
    devices in service a canary first; every device's batch is the one it was deployed in."""
    project = make_project(tmp_path, devices=4, new=("dev2", "dev4"))
    res = cli(project, "deploy", "1.2.0", "--json")
    assert res.returncode == 0, res.stderr
    run = json.loads(res.stdout)
    assert [b["hosts"] for b in run["detail"]["batches"]] == [["dev2", "dev4"], ["dev1"], ["dev3"]]
    assert [(b["done"], b["total"]) for b in run["detail"]["batches"]] == [(4, 4), (2, 2), (2, 2)]
    assert {d["host"]: d["batch"] for d in run["detail"]["devices"]} == {
        "dev1": 2,
        "dev2": 1,
        "dev3": 3,
        "dev4": 1,
    }
    plain = cli(project, "deploy", "1.2.0")
    assert "before the batches: Sort the devices" in plain.stdout and "batch 3:" in plain.stdout, plain.stdout


def test_plain_output_when_not_a_tty(project: Path) -> None:
    res = cli(project, "deploy", "1.2.0", "-l", "dev2", "--serial", "1")
    assert res.returncode == 0, res.stderr
    assert "batch 1:" in res.stdout
    assert "dev2: changed ok=1 changed=1 failed=0" in res.stdout
    assert "dev1" not in res.stdout


def test_failed_device_exits_1(tmp_path: Path) -> None:
    project = make_project(tmp_path, broken=("dev3",))
    res = cli(project, "deploy", "1.2.0", "--serial", "1", "100%", "--max-fail-percentage", "50", "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    run = json.loads(res.stdout)
    assert run["failed_hosts"] == ["dev3"]
    dev3 = next(d for d in run["detail"]["devices"] if d["host"] == "dev3")
    assert dev3["state"] == "failed" and "never got ready" in dev3["message"]


def test_aborted_batch_exits_3_and_later_batches_never_start(tmp_path: Path) -> None:
    project = make_project(tmp_path, broken=("dev1",))
    res = cli(project, "deploy", "1.2.0", "--json")  # canary dev1 fails, max_fail_percentage 0
    assert res.returncode == 3, res.stdout + res.stderr
    run = json.loads(res.stdout)
    assert run["detail"]["aborted"] is True
    assert run["detail"]["never_started"] == ["dev2", "dev3"]
    assert not (project / "out" / "dev2.version").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deploy", "9.9.9"], "unknown version '9.9.9'"),
        (["deploy", "1.2.0", "-l", "nosuchhost"], "matches no host"),
        (["deploy", "1.2.0", "--serial", "0"], "--serial '0'"),
        (["restore", "dev9"], "not in rvm_devices"),
        (["history", "nope"], "no run 'nope'"),
        (["deploy"], "the following arguments are required: version"),
        (["frobnicate"], "invalid choice"),
        (["converge", "--ee", "localhost/rvm-ee:no-such-tag"], "no such image on this control node"),
    ],
)
def test_bad_usage_exits_2_and_starts_nothing(project: Path, args: list[str], message: str) -> None:
    res = cli(project, *args)
    assert res.returncode == 2
    assert message in res.stderr
    assert history(project) == []
    assert list((project / "out").iterdir()) == []


def test_second_deploy_while_one_runs_exits_2(project: Path) -> None:
    import fcntl

    lock = project / ".cache/rvm-fleet/deploy.lock"
    lock.parent.mkdir(parents=True)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("pid 4242")
        held.flush()
        res = cli(project, "deploy", "1.2.0")
    assert res.returncode == 2
    assert "already running (pid 4242)" in res.stderr
    assert history(project) == []


def test_history_lists_runs_and_shows_one(tmp_path: Path) -> None:
    project = make_project(tmp_path, broken=("dev2",))
    assert cli(project, "deploy", "1.2.0", "-l", "dev1").returncode == 0
    assert cli(project, "deploy", "1.2.0", "-l", "dev2").returncode == 1
    runs = history(project)
    assert [(r["command"], r["status"], r["exit_code"], r["limit"]) for r in runs] == [
        ("deploy", "successful", 0, "dev1"),
        ("deploy", "failed", 1, "dev2"),
    ]
    assert all(r["who"] and r["duration_s"] > 0 for r in runs)
    table = cli(project, "history").stdout
    assert "deploy 1.2.0 -l dev2" in table and "failed" in table
    one = cli(project, "history", runs[1]["ident"])
    assert one.returncode == 0
    assert "dev2" in one.stdout and "never got ready" in one.stdout


def test_ctrl_c_cancels_the_run(project: Path) -> None:
    env = {**os.environ, "RVM_FLEET_PROJECT": str(project)}
    proc = subprocess.Popen([*RVM_FLEET, "converge", "--json"], env=env, stdout=subprocess.PIPE, text=True)
    events = project / ".cache/rvm-fleet/artifacts"
    deadline = time.monotonic() + 60
    while not any("Wait for the go file" in p.read_text() for p in events.glob("*/job_events/*.json")):
        assert time.monotonic() < deadline, "the wait task never started"
        assert proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    run = json.loads(out)
    assert run["status"] == "canceled"
    assert not list((project / "out").glob("*.after"))
    assert history(project)[0]["status"] == "canceled"


def test_live_view_from_the_run_events(tmp_path: Path) -> None:
    """The rich view (a terminal) shows one bar per batch and the device table built from events."""
    from io import StringIO

    from rich.console import Console
    from rvm_fleet.display import LiveDisplay
    from rvm_fleet.progress import Progress
    from rvm_fleet.runs import load

    project = make_project(tmp_path, broken=("dev3",))
    res = cli(project, "deploy", "1.2.0", "--serial", "1", "2", "--max-fail-percentage", "50", "--json")
    ident = json.loads(res.stdout)["ident"]
    artifacts = project / ".cache/rvm-fleet/artifacts"
    events = sorted(
        (json.loads(p.read_text()) for p in (artifacts / ident / "job_events").glob("*.json")),
        key=lambda e: e["counter"],
    )
    progress = Progress(["dev1", "dev2", "dev3"])
    screen = StringIO()
    view = LiveDisplay(Console(file=screen, force_terminal=True, width=160, color_system=None))
    record = load(artifacts, ident)
    assert record is not None
    view.start(progress, record)
    for event in events:
        progress.feed(event)
        view.refresh(progress, False)
    view.stop(progress, record)
    text = screen.getvalue()
    assert "batch 1" in text and "batch 2" in text
    last_table = text[text.rindex("┏") :]
    assert "dev3" in last_table and "failed" in last_table and "never got ready" in last_table
    assert [b.hosts for b in progress.batches] == [["dev1"], ["dev2", "dev3"]]
    assert [(b.done, b.total) for b in progress.batches] == [(2, 2), (4, 4)]


LOCKED_DEPLOY = """\
- name: Deploy holding the device's update lock (as roles/rvm_edge/tasks/lock.yml does)
  hosts: rvm_devices
  gather_facts: false
  tasks:
    - name: Name this run
      ansible.builtin.set_fact:
        run_token: "{{ lookup('ansible.builtin.password', '/dev/null', chars=['digits'], length=20) }}"
    - name: Locked part
      block:
        - name: Take the update lock
          rvm_update_lock:
            path: "{{ out }}/{{ inventory_hostname }}.lock"
            token: "{{ run_token }}"
            holder: "tester: deploy {{ rvm_edge_version }}"
            stale_after_s: "{{ rvm_edge_lock_stale_after_s | default(1800) }}"
            break_lock: "{{ rvm_edge_lock_break | default(false) }}"
        - name: Install (waits for the go file when RVM_TEST_HOLD=1)
          ansible.builtin.wait_for:
            path: "{{ out }}/go"
            timeout: 120
          when: lookup('ansible.builtin.env', 'RVM_TEST_HOLD') == '1'
      always:
        - name: Give the update lock back
          rvm_update_lock:
            path: "{{ out }}/{{ inventory_hostname }}.lock"
            token: "{{ run_token }}"
            state: released
"""


def test_a_canceled_deploy_leaves_the_lock_and_the_next_run_takes_it_over(tmp_path: Path) -> None:
    """Ctrl-C kills ansible-playbook (no `always` runs): the lock stays with the dead run.

    The next deploy is refused naming the holder (exit 1, a failed device); --break-lock takes it
    over at once, and a lock older than rvm_edge_lock_stale_after_s is taken over without it.
    """
    project = make_project(tmp_path, devices=1)
    library = Path(__file__).resolve().parents[2] / "library"
    (project / "ansible.cfg").write_text(f"[defaults]\ninventory = hosts.ini\nlibrary = {library}\n")
    (project / "playbooks" / "deploy.yml").write_text(LOCKED_DEPLOY)
    lock = project / "out" / "dev1.lock"
    env = {**os.environ, "RVM_FLEET_PROJECT": str(project)}
    proc = subprocess.Popen(
        [*RVM_FLEET, "deploy", "1.2.0", "--json"],
        env={**env, "RVM_TEST_HOLD": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not lock.exists():
        assert time.monotonic() < deadline and proc.poll() is None, "the lock was never taken"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and json.loads(out)["status"] == "canceled"
    held = json.loads(lock.read_text())
    assert held["holder"] == "tester: deploy 1.2.0"

    refused = cli(project, "deploy", "1.2.0", "--json")
    assert refused.returncode == 1
    assert "tester: deploy 1.2.0" in json.loads(refused.stdout)["detail"]["devices"][0]["message"]
    assert json.loads(lock.read_text())["token"] == held["token"]

    taken = cli(project, "deploy", "1.2.0", "--break-lock", "--json")
    assert taken.returncode == 0, taken.stdout
    assert not lock.exists()

    lock.write_text(json.dumps({**held, "since": time.time() - 3600}))  # a dead run's lock, an hour old
    assert cli(project, "deploy", "1.2.0").returncode == 0
    assert not lock.exists()


def test_status_from_prometheus(tmp_path: Path, prom: PrometheusClient) -> None:  # noqa: F811
    project = make_project(tmp_path, names=("dev-a", "dev-b"))
    res = cli(project, "status", "--prometheus", prom.base_url, "--json")
    assert res.returncode == 1, res.stderr  # dev-b is not ready
    rows = {r["device"]: r for r in json.loads(res.stdout)}
    a, b = rows["dev-a"], rows["dev-b"]
    assert (a["source"], a["reachable"], a["version"], a["ready"], a["outbox_depth"]) == (
        "prometheus",
        True,
        "0.1.0",
        True,
        3,
    )
    assert 110 < a["backup_age_s"] < 300
    assert (b["ready"], b["backup_age_s"]) == (False, None)
    # found from the inventory (monitoring_servers: rvm_mgmt_address + port), with profile_tasks
    # printing around ansible's JSON as in the project's ansible.cfg
    port = prom.base_url.rsplit(":", 1)[1]
    with (project / "hosts.ini").open("a") as inv:
        inv.write(
            f"[monitoring_servers]\nmon rvm_mgmt_address=127.0.0.1 monitoring_server_prometheus_port={port}\n"
        )
    with (project / "ansible.cfg").open("a") as cfg:
        cfg.write("callbacks_enabled = ansible.posix.profile_tasks\n")
    env = {k: v for k, v in os.environ.items() if k != "RVM_FLEET_PROMETHEUS_URL"}

    def sources() -> set[str]:
        """Where `status` (no --prometheus) took its rows from, with the project's inventory."""
        proc = subprocess.run(
            [*RVM_FLEET, "status", "-l", "rvm_devices", "--json"],
            env={**env, "RVM_FLEET_PROJECT": str(project)},
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.stdout.strip(), proc.stderr
        return {r["source"] for r in json.loads(proc.stdout)}

    assert sources() == {"prometheus"}
    # a remembered URL that no longer answers (the monitoring server moved) is asked for again
    remembered = project / ".cache" / "rvm-fleet" / "prometheus-url.json"
    stale = json.loads(remembered.read_text())
    remembered.write_text(json.dumps({**stale, "url": "http://127.0.0.1:9"}))
    assert sources() == {"prometheus"}
    assert json.loads(remembered.read_text())["url"] == stale["url"]
    table = cli(project, "status", "--prometheus", prom.base_url).stdout.splitlines()
    assert table[0].split()[:4] == ["DEVICE", "REACHABLE", "VERSION", "READY"]
    assert table[1].split()[:4] == ["dev-a", "yes", "0.1.0", "yes"]


def test_status_asks_the_devices_when_no_prometheus_answers(project: Path) -> None:
    with (project / "hosts.ini").open("a") as inv:
        inv.write("[rvm_devices]\ngone ansible_connection=ssh ansible_host=127.0.0.1 ansible_port=1\n")
    res = cli(project, "status", "--prometheus", "http://127.0.0.1:1", "--json")
    assert res.returncode == 1, res.stderr
    rows = {r["device"]: r for r in json.loads(res.stdout)}
    assert sorted(rows) == ["dev1", "dev2", "dev3", "gone"]
    assert all(r["source"] == "device" for r in rows.values())
    assert rows["dev1"]["reachable"] is True and rows["gone"]["reachable"] is False
    assert rows["dev1"]["ready"] is False  # no rvm-edge answers /readyz on this machine


def test_artifacts_keep_no_secret_from_the_operators_environment(project: Path) -> None:
    env = {**os.environ, "RVM_FLEET_PROJECT": str(project), "ZEROTIER_TOKEN": "s3cr3t-t0ken"}
    (project / "out" / "go").touch()  # site.yml's wait passes at once
    res = subprocess.run(
        [*RVM_FLEET, "converge", "--json"], env=env, capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    run_dir = project / ".cache/rvm-fleet/artifacts" / json.loads(res.stdout)["ident"]
    leaked = [
        p for p in run_dir.rglob("*") if p.is_file() and "s3cr3t-t0ken" in p.read_text(errors="replace")
    ]
    assert leaked == []
    assert json.loads((run_dir / "command").read_text())["command"][0] == "ansible-playbook"
