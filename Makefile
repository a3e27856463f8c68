# mmlc developer commands. `make demo` and `make test` set up everything on a fresh Debian 12.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PKG := build/pkg
APT_PACKAGES := qgis python3-qgis python3-gdal gdal-bin xvfb python3-venv
STAMP := $(VENV)/.mmlc-setup-$(shell cat requirements.txt requirements-dev.txt | md5sum | cut -c1-8)
export QT_QPA_PLATFORM := offscreen
export QGIS_PLUGINPATH := $(CURDIR)/$(PKG)
export PYTHONPATH := $(CURDIR)/$(PKG)
# qgis_process.bin: Debian's /usr/bin/qgis_process wrapper passes --noversioncheck, which 3.22 rejects.
export QGIS_PROCESS := $(shell command -v qgis_process.bin || echo /usr/bin/qgis_process.bin)

.PHONY: setup test demo package lint models bench clean

setup: $(STAMP) $(PKG)/mmlc

$(STAMP): requirements.txt requirements-dev.txt
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi
	@[ -x $(PY) ] || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q $$( [ -d /opt/wheels ] && echo --find-links /opt/wheels ) -r requirements-dev.txt
	@rm -f $(VENV)/.mmlc-setup-*; touch $@

$(PKG)/mmlc:
	@mkdir -p $(PKG) && ln -sfn ../.. $(PKG)/mmlc

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

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
