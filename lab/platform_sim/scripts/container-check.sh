#!/usr/bin/env bash
# Install the simulator and its systemd unit in a throwaway lab container and prove it serves.
#
#   lab/platform_sim/scripts/container-check.sh [IMAGE] [full|drop-in]
#
# full:    container started with CAP_SYS_ADMIN, the unit's whole sandbox applies.
# drop-in: default podman capabilities (like the lab fleet), with container-sandbox.conf installed.
# Needs root, podman and a lab image (systemd as PID 1, python3 of the host's minor version).
# The container is removed on exit. Exit status 0 means: started as Type=notify, health and a
# real heartbeat answered, stopped cleanly with status 0.
set -euo pipefail

IMAGE="${1:-localhost/rvm-lab:test}"
MODE="${2:-drop-in}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
NAME="rvm-platform-sim-check-$$"
WORK="$(mktemp -d)"
PODMAN=(podman --runtime runc --cgroup-manager cgroupfs --events-backend file)
CAPS=()
[[ "$MODE" == full ]] && CAPS=(--cap-add SYS_ADMIN)
[[ "$MODE" == full || "$MODE" == drop-in ]] || { echo "mode must be full or drop-in, not '$MODE'" >&2; exit 2; }

cleanup() { "${PODMAN[@]}" rm -f "$NAME" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
in_ct() { "${PODMAN[@]}" exec "$NAME" "$@"; }
in_ct_stdin() { "${PODMAN[@]}" exec -i "$NAME" "$@"; }

python3 -m pip install -q --target "$WORK/site" --no-deps -r "$HERE/requirements.txt" "$HERE"
printf '#!/opt/rvm-platform-sim/venv/bin/python\nimport sys\nfrom rvm_platform_sim.cli import main\nsys.exit(main())\n' \
  > "$WORK/rvm-platform-sim"
chmod 755 "$WORK/rvm-platform-sim"

"${PODMAN[@]}" run -d --name "$NAME" --systemd=always "${CAPS[@]}" \
  --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=32768:32768 "$IMAGE" /sbin/init >/dev/null
for _ in $(seq 1 100); do
  state="$(in_ct systemctl is-system-running 2>/dev/null || true)"
  [[ "$state" == running || "$state" == degraded ]] && break
  sleep 0.2
done

in_ct python3 -m venv --without-pip /opt/rvm-platform-sim/venv
site="$(in_ct /opt/rvm-platform-sim/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"${PODMAN[@]}" cp "$WORK/site/." "$NAME:$site/"
"${PODMAN[@]}" cp "$WORK/rvm-platform-sim" "$NAME:/opt/rvm-platform-sim/venv/bin/rvm-platform-sim"
in_ct useradd --system --no-create-home --shell /usr/sbin/nologin rvm-platform-sim
in_ct sh -c 'mkdir -p /etc/rvm-platform-sim && head -c 24 /dev/urandom | od -An -tx1 | tr -d " \n" \
  > /etc/rvm-platform-sim/admin-token && chown root:rvm-platform-sim /etc/rvm-platform-sim/admin-token \
  && chmod 0640 /etc/rvm-platform-sim/admin-token'
"${PODMAN[@]}" cp "$HERE/rvm-platform-sim.service" "$NAME:/etc/systemd/system/rvm-platform-sim.service"
if [[ "$MODE" == drop-in ]]; then
  in_ct mkdir -p /etc/systemd/system/rvm-platform-sim.service.d
  "${PODMAN[@]}" cp "$HERE/container-sandbox.conf" \
    "$NAME:/etc/systemd/system/rvm-platform-sim.service.d/container-sandbox.conf"
fi
in_ct systemd-analyze verify /etc/systemd/system/rvm-platform-sim.service
in_ct systemctl daemon-reload
in_ct systemctl start rvm-platform-sim   # Type=notify: returns once READY=1 arrived
in_ct systemctl is-active rvm-platform-sim
in_ct_stdin sh -c 'python3 - "$(cat /etc/rvm-platform-sim/admin-token)"' <<'PY'
import json, sys, urllib.request as u
base, token = "http://127.0.0.1:8000", sys.argv[1]
print(u.urlopen(base + "/_sim/health").read().decode())
req = u.Request(base + "/_sim/machines", data=b"{}", method="POST", headers={"Authorization": "Bearer " + token})
machine = json.load(u.urlopen(req))
req = u.Request(base + "/api/v1/edge/heartbeat", data=b"{}", method="POST",
                headers={"X-RVM-API-KEY": machine["api_key"], "Content-Type": "application/json"})
reply = json.load(u.urlopen(req))
assert reply["status"] == "success", reply
print(json.dumps(reply))
PY
in_ct systemd-analyze security rvm-platform-sim --no-pager | tail -1
in_ct systemctl stop rvm-platform-sim
in_ct systemctl show rvm-platform-sim -p Result -p ExecMainStatus
[[ "$(in_ct systemctl show rvm-platform-sim -p ExecMainStatus --value)" == 0 ]]
echo "container check ($MODE): OK"
