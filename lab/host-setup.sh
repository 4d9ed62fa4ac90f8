#!/usr/bin/env bash
# Prepare this machine (Debian 12, root) to run the lab fleet: the Debian packages the lab and the
# tests need, and the container engine settings that make systemd containers work on this kind of
# VM (DESIGN §8). Idempotent: a second run installs and writes nothing.
set -euo pipefail

packages=(podman runc mmdebstrap uidmap containernetworking-plugins python3-venv git make restic)
packages+=(prometheus prometheus-alertmanager)  # promtool, amtool and prometheus for tests/monitoring and fleet/tests (issue 11)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "host-setup: missing ${missing[*]}: run 'apt-get install -y ${missing[*]}' as root" >&2
    exit 1
  fi
  echo "==> installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# runc (crun refuses this VM's hybrid cgroup layout), cgroupfs, file events, and ulimits no
# higher than the machine's hard limits.
conf=/etc/containers/containers.conf.d/50-rvm-lab.conf
nofile=$(ulimit -Hn)
nproc=$(( $(ulimit -Hu) < 32768 ? $(ulimit -Hu) : 32768 ))
[[ $(ulimit -Hu) == unlimited ]] && nproc=32768
want=$(cat <<CONF
# Written by rvm-fleet lab/host-setup.sh: settings the lab's systemd containers need here.
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
)
if [[ ! -f $conf || "$(cat "$conf")" != "$want" ]]; then
  mkdir -p "$(dirname "$conf")"
  printf '%s\n' "$want" > "$conf"
  echo "==> wrote $conf"
fi

# inotify instances: every systemd container takes several (systemd, journald, logind, udev, path
# units) and they all count against root's fs.inotify.max_user_instances (128 on Debian). The lab
# (6 hosts) fits; the fleet-scale stage's 20 extra devices took the host to 154, and the next
# container's systemd then hung at boot with its path units failed (a Molecule scenario run beside
# it never got past "Install nftables"). 1024 leaves room for the 30 scale devices the stage allows.
sysctl_conf=/etc/sysctl.d/60-rvm-lab.conf
sysctl_want="# Written by rvm-fleet lab/host-setup.sh: inotify instances for many systemd containers.
fs.inotify.max_user_instances = 1024"
if [[ ! -f $sysctl_conf || "$(cat "$sysctl_conf")" != "$sysctl_want" ]]; then
  printf '%s\n' "$sysctl_want" > "$sysctl_conf"
  echo "==> wrote $sysctl_conf"
fi
if (( $(sysctl -n fs.inotify.max_user_instances) < 1024 )); then
  sysctl -q -w fs.inotify.max_user_instances=1024
fi
