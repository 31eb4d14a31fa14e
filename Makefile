# make demo: a master and a slave on this machine, configured, synced, promoted, shown.
# make test: the whole suite. Both install what is missing first (Debian packages when run as root,
# a venv in the checkout with the project installed editable and its test extras).
# make deb: the Debian package (dh-virtualenv) in dist/ (DEB_OUT=DIR elsewhere); installs its build
# dependencies with apt-get when run as root (docs/packaging.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# the interpreter from another folder (the examples' tests); quoted where used: a checkout path may hold a space
PYABS := $(if $(filter /%,$(PY)),$(PY),$(CURDIR)/$(PY))
# Debian packages the tests and the demo start privately (command:package; the Cockpit page's tests run a
# private cockpit-ws and drive Debian's chromium through its chromedriver)
DEB_NEEDS := rsync:rsync stunnel4:stunnel4 ip:iproute2 tmux:tmux lsyncd:lsyncd \
             mariadbd:mariadb-server mariadb-backup:mariadb-backup initdb:postgresql slapadd:slapd tdbtool:tdb-tools \
             setfacl:acl /usr/lib/cockpit/cockpit-ws:cockpit-ws cockpit-bridge:cockpit-bridge \
             chromium:chromium chromedriver:chromium-driver strace:strace
PYTEST_ARGS ?=

.PHONY: all deps venv test demo bench deb clean

all: test

deps:
	@bash scripts/install-deps.sh $(DEB_NEEDS)

$(VENV)/.installed: setup.py pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

test: deps venv
	@# style and types first (pyproject.toml configures both): seconds, before minutes of tests
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy hotsync_events
	$(PY) -m pytest $(PYTEST_ARGS)
	@# the example third-party plugin: installed as a distribution of its own, its tests use our pytest11
	@# fixtures; uninstalled afterwards so the dev venv's plugin list stays the built-ins
	$(PY) -m pip install -q --no-deps --no-build-isolation ./examples/hotsync-example-plugin
	@# (PYTEST_ARGS' paths name our tests, not the example's: only its options are passed on)
	cd examples/hotsync-example-plugin && "$(PYABS)" -m pytest $(filter-out tests tests/%,$(PYTEST_ARGS)); rc=$$?; \
	  cd ../.. && $(PY) -m pip uninstall -y -q hotsync-example-plugin; exit $$rc
	@# the second example (docs/plugins.md, Public API): Acme CRM, with an SQLite dump and a promote step
	$(PY) -m pip install -q --no-deps --no-build-isolation ./examples/acme-crm
	cd examples/acme-crm && "$(PYABS)" -m pytest $(filter-out tests tests/%,$(PYTEST_ARGS)); rc=$$?; \
	  cd ../.. && $(PY) -m pip uninstall -y -q hotsync-acme-crm; exit $$rc

demo: deps venv
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

bench: deps venv
	@# byte-compile as an installed wheel is: the benches time the program, not Python compiling it
	@$(PY) -m compileall -q hotsync_events plugins >/dev/null
	@for b in bench/*.py; do case $$b in */benchlib.py) continue;; esac; \
		echo "== $$b"; PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) $$b || exit 1; done

deb:
	@bash scripts/build-deb.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
