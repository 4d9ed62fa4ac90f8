#!/usr/bin/env bash
# Run `molecule test` for every scenario: each role's own (roles/<role>/molecule/<name>) and the
# fleet-level ones (molecule/<name>). The lab image is built first (cached by its recipe) and
# handed to the scenarios as RVM_LAB_IMAGE, since no registry is reachable to pull one from.
# molecule/deploy is not in this loop: it runs on the lab fleet, and `make fleet-test` runs it on the
# lab its session has converged (tests/fleet/test_zz_final.py), so CI brings the lab up and converges
# it once instead of twice. `lab/run-molecule.sh deploy` (or `molecule test -s deploy`) runs it alone.
set -euo pipefail
cd "$(dirname "$0")/.."
RVM_LAB_IMAGE=$(python3 lab/labctl.py image | tail -n 1)
export RVM_LAB_IMAGE
# The role scenarios are reached over ssh with the lab key (lab/molecule/ssh.yml, a base config:
# several times faster per task than the podman connection plugin).
python3 lab/labctl.py ssh-key >/dev/null
RVM_REPO_ROOT=$PWD
export RVM_REPO_ROOT
FLEET_SESSION_SCENARIOS=(molecule/deploy)
mapfile -t found < <(find roles/*/molecule molecule -mindepth 2 -maxdepth 2 -name molecule.yml 2>/dev/null | sort)
scenarios=()
for file in "${found[@]}"; do
  dir=$(dirname "$file")
  if (($# > 0)); then
    [[ " $* " == *" $(basename "$dir") "* || " $* " == *" $dir "* ]] && scenarios+=("$file")
  elif [[ " ${FLEET_SESSION_SCENARIOS[*]} " != *" $dir "* ]]; then
    scenarios+=("$file")
  fi
done
if ((${#scenarios[@]} == 0)); then
  echo "run-molecule: no scenarios found" >&2
  exit 1
fi
# RVM_MOLECULE_JOBS=N runs N scenarios at once (each has its own containers; none uses the lab),
# longest first, each one's output shown whole when it ends. Default 2: one scenario keeps about one
# core busy (monitoring_agent: 51 s of control-node CPU in 235 s, plus its container's), so two at a
# time cut the wall time on 2 cores by up to half. RVM_MOLECULE_JOBS=1 streams them one by one.
jobs=${RVM_MOLECULE_JOBS:-2}
# Longest first, by the last measured times (docs/ci.md): jetson_runtime grew to the second longest
# with its zram case (~250-430 s) but came sixth, so one lane idled for minutes at the end.
LONGEST_FIRST=(roles/rvm_edge roles/jetson_runtime roles/hardening roles/backup roles/zerotier)
ordered=()
for prefix in "${LONGEST_FIRST[@]}"; do
  for file in "${scenarios[@]}"; do [[ $file == "$prefix"/* ]] && ordered+=("$file"); done
done
for file in "${scenarios[@]}"; do
  [[ " ${ordered[*]} " == *" $file "* ]] || ordered+=("$file")
done
total=${#ordered[@]}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

run_one() { # index file: molecule test for one scenario; prints its header and its result line
  local index=$1 file=$2 scenario_dir name project start rc=0
  scenario_dir=$(dirname "$file")
  name=$(basename "$scenario_dir")
  project=$(dirname "$(dirname "$scenario_dir")")
  [[ $project == . || $project == "" ]] && project=.
  echo "==> [$index/$total] molecule test -s $name in $project"
  start=$SECONDS
  local base=()  # a role scenario's own containers over ssh; molecule/deploy brings its inventory
  [[ $project == roles/* ]] && base=(--base-config "$RVM_REPO_ROOT/lab/molecule/ssh.yml")
  (cd "$project" && molecule "${base[@]}" test -s "$name") || rc=$?
  if ((rc == 0)); then
    echo "==> [$index/$total] $project/$name passed in $((SECONDS - start))s"
  else
    echo "==> [$index/$total] $project/$name FAILED (exit $rc) after $((SECONDS - start))s"
  fi
  return "$rc"
}

failed=0
if ((jobs <= 1)); then
  index=0
  for file in "${ordered[@]}"; do
    index=$((index + 1))
    run_one "$index" "$file"
  done
  exit 0
fi
declare -A log_of=()
running=0
finish_one() { # wait for any scenario, then show its whole output
  local pid rc=0
  wait -n -p pid || rc=$?
  cat "${log_of[$pid]}"
  ((rc == 0)) || failed=1
  running=$((running - 1))
}
index=0
for file in "${ordered[@]}"; do
  index=$((index + 1))
  ((running < jobs)) || finish_one
  run_one "$index" "$file" >"$logs/$index.log" 2>&1 &
  log_of[$!]=$logs/$index.log
  running=$((running + 1))
done
while ((running > 0)); do finish_one; done
if ((failed)); then
  echo "run-molecule: a scenario failed (its output is above)" >&2
  exit 1
fi
