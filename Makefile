# mmlc developer commands. `make demo` and `make test` set up everything on a fresh Debian 12 or 13.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PKG := build/pkg
# Debian 13 (trixie) and later ship a torch that fits (python3-torch 2.6, CPU): take it from apt
# rather than pip's multi-GB wheels. Debian 12's python3-torch (1.13) is too old: there the venv
# gets pip's torch, pinned to the tested 2.13.0. Debian 13 is told by /etc/os-release's VERSION_ID
# (>= 13), or, on testing/sid which have none, by /usr/bin/python3 >= 3.13 (Debian 12 has 3.11).
# Override with TORCH_FROM=apt|pip.
OS_ID := $(shell . /etc/os-release 2>/dev/null; echo $$ID)
OS_MAJOR := $(shell . /etc/os-release 2>/dev/null; echo $${VERSION_ID%%.*})
ifeq ($(origin TORCH_FROM),undefined)
  ifeq ($(OS_ID),debian)
    TORCH_FROM := $(shell if [ -n "$(OS_MAJOR)" ]; then [ "$(OS_MAJOR)" -ge 13 ] && echo apt || echo pip; \
	  else /usr/bin/python3 -c 'import sys; print("apt" if sys.version_info >= (3, 13) else "pip")' 2>/dev/null || echo pip; fi)
  else
    TORCH_FROM := pip
  endif
endif
PIP_TORCH := $(if $(filter pip,$(TORCH_FROM)),torch==2.13.0)
# debootstrap builds the Debian 13 + QGIS 3.44 root that `make test` also runs the suite in
ROOT_TOOLS ?= debootstrap
APT_PACKAGES := qgis python3-qgis python3-gdal gdal-bin xvfb python3-venv $(ROOT_TOOLS) \
	$(if $(filter apt,$(TORCH_FROM)),python3-torch python3-safetensors)
STAMP := $(VENV)/.mmlc-setup-$(shell cat requirements.txt requirements-dev.txt | md5sum | cut -c1-8)-$(TORCH_FROM)
# Name of the stack a test run is on (the QGIS 3.44 root passes STACK=qgis344); its log: build/test-$(STACK).log
STACK ?= host
export QT_QPA_PLATFORM := offscreen
export QGIS_PLUGINPATH := $(CURDIR)/$(PKG)
export PYTHONPATH := $(CURDIR)/$(PKG)
# qgis_process.bin: Debian 12's /usr/bin/qgis_process wrapper passes --noversioncheck, which 3.22
# rejects; Debian 13's wrapper works and has no .bin beside it.
export QGIS_PROCESS := $(shell command -v qgis_process.bin || command -v qgis_process || echo /usr/bin/qgis_process)

.PHONY: setup test test-host test-qgis344 qgis344-root demo package lint models bench clean

setup: $(STAMP) $(PKG)/mmlc

# In pip mode the requirement files plus the torch pin; in apt mode torch and safetensors are
# Debian's (seen through --system-site-packages) and pip must not replace them with a wheel.
$(STAMP): requirements.txt requirements-dev.txt
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi
	@[ -x $(PY) ] || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	@if [ "$(TORCH_FROM)" = apt ]; then \
	  echo "torch: Debian's python3-torch $$(/usr/bin/python3 -c 'import torch; print(torch.__version__)')"; \
	  $(PY) -m pip install -q $$( [ -d /opt/wheels ] && echo --find-links /opt/wheels ) \
	    -r <(grep -v -E '^(-r|torch|safetensors)' requirements-dev.txt; grep -v -E '^(torch|safetensors)' requirements.txt); \
	  $(PY) -c 'import torch, safetensors, sys; sys.exit(0 if torch.__file__.startswith("/usr/lib/python3/") else "torch is not Debian'"'"'s")'; \
	else \
	  $(PY) -m pip install -q $$( [ -d /opt/wheels ] && echo --find-links /opt/wheels ) -r requirements-dev.txt $(PIP_TORCH); \
	fi
	@rm -f $(VENV)/.mmlc-setup-*; touch $@

$(PKG)/mmlc:
	@mkdir -p $(PKG) && ln -sfn ../.. $(PKG)/mmlc

# The whole suite on both stacks: the host's QGIS, then QGIS 3.44 LTR in the Debian 13 root
# (tools/qgis344_root.sh, built once per machine). Both run even when the first fails; both must pass.
test: setup
	@rc=0; \
	$(MAKE) --no-print-directory test-host || rc=1; \
	$(MAKE) --no-print-directory test-qgis344 || rc=1; \
	echo "================ mmlc test summary ================"; \
	for s in host qgis344; do \
	  printf '%-8s %s\n         %s\n' "$$s" "$$(head -1 build/test-$$s.log 2>/dev/null)" \
	    "$$(grep -E '(passed|failed|errors?|no tests ran).* in [0-9.]+s' build/test-$$s.log 2>/dev/null | tail -1)"; \
	done; \
	[ $$rc = 0 ] && echo "both stacks passed" || echo "FAILED on at least one stack"; \
	exit $$rc

# The suite on this machine's QGIS only. "No tests collected" (pytest exit 5) fails.
test-host: setup
	@mkdir -p build; set -o pipefail; \
	stack="$(STACK): $$($(PY) tools/stack.py)"; \
	echo "======== mmlc suite on $$stack ========"; \
	start=$$SECONDS; \
	{ echo "$$stack"; $(PY) -m pytest $(PYTEST_ARGS); } 2>&1 | tee build/test-$(STACK).log; rc=$${PIPESTATUS[0]}; \
	echo "======== $(STACK) finished in $$((SECONDS - start)) s (pytest exit $$rc) ========"; \
	if [ $$rc = 5 ]; then echo "no tests were collected: failing" >&2; exit 1; fi; \
	exit $$rc

# The suite on QGIS 3.44 LTR, Python 3.13, GDAL 3.10, numpy 2, Debian's torch 2.6 (builds the root first).
test-qgis344: $(PKG)/mmlc
	@mkdir -p build; bash tools/qgis344_root.sh test $(PYTEST_ARGS)

qgis344-root:
	bash tools/qgis344_root.sh build

demo: setup
	$(PY) -m mmlc.tools.demo

models: setup
	$(PY) -m mmlc.tools.make_models

bench: setup
	$(PY) bench/run_all.py

# The zip, checked like plugins.qgis.org checks uploads (size, files, Bandit, detect-secrets).
package: $(STAMP)
	@mkdir -p dist && $(PY) tools/package.py dist

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf build dist demo_output .pytest_cache
