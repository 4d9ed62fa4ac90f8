#!/usr/bin/env bash
# Run `molecule test` for every scenario: each role's own (roles/<role>/molecule/<name>) and the
# fleet-level ones (molecule/<name>). The lab image is built first (cached by its recipe) and
# handed to the scenarios as RVM_LAB_IMAGE, since no registry is reachable to pull one from.
set -euo pipefail
cd "$(dirname "$0")/.."
RVM_LAB_IMAGE=$(python3 lab/labctl.py image | tail -n 1)
export RVM_LAB_IMAGE
mapfile -t scenarios < <(find roles/*/molecule molecule -mindepth 2 -maxdepth 2 -name molecule.yml 2>/dev/null | sort)
if ((${#scenarios[@]} == 0)); then
  echo "run-molecule: no scenarios found" >&2
  exit 1
fi
total=${#scenarios[@]}
index=0
for file in "${scenarios[@]}"; do
  index=$((index + 1))
  scenario_dir=$(dirname "$file")
  name=$(basename "$scenario_dir")
  project=$(dirname "$(dirname "$scenario_dir")")
  [[ $project == . || $project == "" ]] && project=.
  echo "==> [$index/$total] molecule test -s $name in $project"
  start=$SECONDS
  (cd "$project" && molecule test -s "$name")
  echo "==> [$index/$total] $project/$name passed in $((SECONDS - start))s"
done
