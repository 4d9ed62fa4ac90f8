# rvm-fleet: the two entry points are `make lab` (install, build and converge the lab fleet) and
# `make test` (every check CI runs). Everything else is a building block of those two.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PYTHON ?= python3
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR ?= 1
export PY_COLORS ?= 1

.PHONY: help deps lab lab-up lab-down lab-status lab-image converge test lint unit sim-test app-test toolchain-test molecule fleet-test lock clean ee

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

deps: $(VENV)/.installed ## install host packages (podman, mmdebstrap, ...) and the pinned Python venv
	@lab/host-setup.sh

$(VENV)/.installed: requirements/control.txt fleet/pyproject.toml
	@echo "==> creating $(VENV) from requirements/control.txt"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/control.txt
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e fleet
	@touch $@

lab: deps lab-up converge ## everything: install, build the lab image and the release bundle, start the fleet, run site.yml
	@echo
	@echo "Lab fleet converged. Next: 'make lab-status', 'lab/labctl.py shell rvm-lab-01',"
	@echo "'ansible-playbook site.yml' again (changes nothing, in seconds: docs/converge.md), 'make lab-down' to remove it."

lab-up: deps ## create/start the lab containers of inventories/lab (idempotent)
	@$(VENV)/bin/python lab/labctl.py up

lab-down: $(VENV)/.installed ## remove the lab's containers, network and volumes
	@$(VENV)/bin/python lab/labctl.py down

lab-status: $(VENV)/.installed ## one line per lab host
	@$(VENV)/bin/python lab/labctl.py status

lab-image: deps ## build the lab image if its recipe changed
	@$(VENV)/bin/python lab/labctl.py image

# The execution environment (execution-environment.yml, docs/execution-environment.md): ansible-builder
# on podman FROM the lab image (its recipe: lab/image), offline but for Debian's apt: the wheels are
# downloaded here first, pinned by the control lock. ~1 min; podman's layer cache makes a rebuild of
# unchanged inputs a few seconds.
EE_IMAGE ?= localhost/rvm-ee:latest
ee: deps ## build the execution environment $(EE_IMAGE) for AWX / rvm-fleet --ee
	@mkdir -p .cache/ee
	$(VENV)/bin/pip download --quiet --disable-pip-version-check --only-binary=:all: \
		-d .cache/ee/wheels -c requirements/control.txt -r requirements/ee-wheels.txt
	$(VENV)/bin/ansible-builder build -f execution-environment.yml -c .cache/ee/context \
		--container-runtime podman -t $(EE_IMAGE) \
		--build-arg EE_BASE_IMAGE=$$($(VENV)/bin/python lab/labctl.py image | tail -n 1)

converge: release ## build the release bundle, then ansible-playbook site.yml against the lab
	ansible-playbook site.yml

test: notes-reset deps lint suites molecule fleet-test ## every check CI runs (see the README for what each covers)
	@echo "make test: every check passed"
	@if [ -s $(TEST_NOTES) ]; then echo "make test: notes (checks that ran differently here):"; sed "s/^/  /" $(TEST_NOTES); fi

# Lines a check writes when it ran differently from CI's intent (e.g. no Python 3.10 here); printed at the end.
TEST_NOTES := $(CURDIR)/.cache/test-notes.txt
export RVM_TEST_NOTES := $(TEST_NOTES)
.PHONY: notes-reset
notes-reset:
	@mkdir -p $(dir $(TEST_NOTES)) && rm -f $(TEST_NOTES)

lint: $(VENV)/.installed ## yamllint, ansible-lint (production profile), ruff once over the whole tree (one config: pyproject.toml)
	yamllint --strict .
	ansible-lint --profile production
	ruff check .
	ruff format --check .

# The four pytest suites in two lanes at once: one after another they keep ~1.4 of CI's 2 cores
# busy (here: unit 307 s, toolchain 122 s, app 78 s, sim 23 s). Lane one: unit, then sim-test; lane
# two: toolchain-test, then app-test (one app case needs the SAM2 lab model the toolchain builds).
# Each suite has its own venv, temporary directories and ephemeral ports; the app venv (unit and
# app-test both use it) is made first. --output-sync: each lane's output appears whole when it ends.
.PHONY: suites suites-lane-python suites-lane-models
suites: deps ## unit + sim-test and toolchain-test + app-test, the two lanes at once
	$(MAKE) -C app venv NOTES=$(TEST_NOTES)
	@echo "==> two lanes at once (each lane's output when it ends): unit, sim-test | toolchain-test, app-test"
	$(MAKE) --no-print-directory -j2 --output-sync=recurse suites-lane-python suites-lane-models

suites-lane-python:
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory sim-test

suites-lane-models:
	$(MAKE) --no-print-directory toolchain-test
	$(MAKE) --no-print-directory app-test

unit: deps ## pytest: tests/ (modules in library/, role specs, lab tooling, engines built in the runtime venv), agents/, fleet/tests
	$(MAKE) -C app venv NOTES=$(TEST_NOTES)
	pytest -q --ignore tests/fleet tests agents fleet/tests prodtest/tests

SIM_VENV := lab/platform_sim/.venv
$(SIM_VENV)/.installed: lab/platform_sim/requirements.txt lab/platform_sim/requirements-test.txt lab/platform_sim/pyproject.toml
	@test -x $(SIM_VENV)/bin/python || $(PYTHON) -m venv $(SIM_VENV)
	@$(SIM_VENV)/bin/pip install --quiet --disable-pip-version-check -r lab/platform_sim/requirements.txt -r lab/platform_sim/requirements-test.txt
	@$(SIM_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e lab/platform_sim
	@touch $@

sim-test: $(SIM_VENV)/.installed ## the MyRVM platform simulator's tests (real HTTP on loopback)
	$(SIM_VENV)/bin/python -m pytest -q lab/platform_sim/tests

app-test: ## the rvm-edge device runtime: unit and service tests, on Python 3.10 (JetPack 6's) when found
	$(MAKE) -C app test NOTES=$(TEST_NOTES)

toolchain-test: ## the model toolchain (torch venv): export, INT8, SAM2 lab export, ultralytics match, lab mAP50 on the unseen test split
	$(MAKE) -C toolchain test

fleet-test: deps release ee ## the lab fleet end to end: up, converge (rvm-edge on every device), the fleet checks, again in the execution environment (changed=0), the deploy scenario (molecule/deploy), down
	pytest -q -s --durations=25 tests/fleet

.PHONY: prodtest
prodtest: $(VENV)/.installed ## production tests against the converged lab (load, platform faults): out/prodtest/report.md; PRODTEST_PROFILE=quick|full (not part of make test)
	$(MAKE) -C app venv-sim NOTES=$(TEST_NOTES)
	$(VENV)/bin/python -m prodtest

molecule: deps ## molecule test for every role scenario (roles/*/molecule/*); molecule/deploy runs in fleet-test, on its converged lab
	@lab/run-molecule.sh

lock: ## re-resolve requirements/control.in into the pinned requirements/control.txt
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -r requirements/control.in
	{ echo "# Lock of requirements/control.in (make lock)"; .venv-lock/bin/pip freeze --exclude-editable | sort; } > requirements/control.txt
	rm -rf .venv-lock

clean: lab-down ## remove the lab and local caches (keeps the venv)
	rm -rf .cache

# ---- release bundles (issue 5): dist/rvm-edge-<version>-<arch>.tar.gz ------------------------------
# Lab and CPU hosts: the defaults (Debian 12: x86_64, Python 3.11). Jetson (JetPack 6):
#   make release RELEASE_ARCH=aarch64 RELEASE_PYTHON=3.10
# RELEASE_VERSION overrides the app's version (for example a lab build 0.1.0-lab2).
RELEASE_ARCH ?= x86_64
RELEASE_PYTHON ?= 3.11
RELEASE_VERSION ?=
RELEASE_MODELS ?= app/models/lab
# The lab's SAM2 (make -C toolchain sam2-lab) has random weights: never ship it to a device.
RELEASE_SKIP_MODELS ?= $(if $(filter app/models/lab,$(RELEASE_MODELS)),$(if $(wildcard app/models/lab/sam2),sam2))
RELEASE_OUT ?= dist
.PHONY: release
release: deps ## build dist/rvm-edge-<version>-<arch>.tar.gz (RELEASE_ARCH=aarch64 RELEASE_PYTHON=3.10 for Jetson)
	$(VENV)/bin/python release/build_bundle.py --arch $(RELEASE_ARCH) --python $(RELEASE_PYTHON) \
		--models $(RELEASE_MODELS) $(foreach d,$(RELEASE_SKIP_MODELS),--skip-models $(d)) --out $(RELEASE_OUT) \
		$(if $(RELEASE_VERSION),--version $(RELEASE_VERSION))
