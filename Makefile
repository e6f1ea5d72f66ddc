# kubehop — the two commands a user needs are `make demo` and `make test`.
# Both do every set-up step on a fresh Debian 12 machine (as root): Debian packages, the
# virtual environment, and the upstream builds (cached in ~/.cache/kubehop, keyed by version).

SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:/usr/local/go/bin:$(PATH)
VENV := .venv
PY := $(VENV)/bin/python
KUBEHOP := $(VENV)/bin/kubehop
# chromium and chromium-driver: the dashboard's test drives the real browser (Selenium).
DEBS := containerd runc containernetworking-plugins mmdebstrap buildah conntrack iptables \
        bind9 bind9-utils prometheus postgresql \
        iproute2 util-linux ca-certificates chromium chromium-driver
PYTEST_ARGS ?=
PYTEST_SEED ?=

.PHONY: all deps venv build lint test unit demo bench clean testbed-down

all: test

deps: ## Debian packages the testbed needs (only the missing ones are installed)
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.stamp: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.stamp

build: deps venv ## build the upstream components once (cached by version)
	$(KUBEHOP) testbed build
	ln -sf $$($(KUBEHOP) testbed build --print-kubectl) $(VENV)/bin/kubectl

# The shape check: no module of src/ over 600 lines, no function over 60, no import cycle.
lint: venv
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) scripts/check_shape.py

unit: venv
	$(VENV)/bin/pytest -q tests/unit $(PYTEST_ARGS)

# The tests run in a random order (modules shuffled, then the tests inside each), so none can
# lean on another having run first; the seed is printed first: PYTEST_SEED=<it> replays an order.
# TEST_WORKERS pytest-xdist workers take whole modules each, every worker on a testbed of its own
# (slot N: its own bridge, addresses, names and state directory; tests/conftest.py); 0 runs
# everything in one process on the default testbed.
# results/test/junit.xml records the run (tests, failures, time: the README's CI figure).
TEST_WORKERS ?= 2
test: deps build lint ## everything: lint, unit tests, real-cluster tests on the testbed
	@seed=$(or $(PYTEST_SEED),$$RANDOM); \
	echo "pytest order seed: $$seed (replay this order with: make test PYTEST_SEED=$$seed)"; \
	mkdir -p results/test; \
	$(VENV)/bin/pytest tests -p random_order --random-order-bucket=module \
	  --random-order-seed=$$seed -n $(TEST_WORKERS) --dist loadfile --durations=15 \
	  --junitxml=results/test/junit.xml $(PYTEST_ARGS)

demo: deps build ## bring up the testbed and run the demo on it
	bash scripts/demo.sh

BENCH_ARGS ?=
BENCH_CONTROLLER_ARGS ?=
BENCH_STATEFUL_ARGS ?=
bench: deps build ## strategies vs baselines, then the controller's reaction time, then stateful moves by volume size, on the testbed; files under results/bench, results/bench-controller and results/bench-stateful
	$(KUBEHOP) testbed up
	$(KUBEHOP) bench $(BENCH_ARGS)
	$(KUBEHOP) bench --scenario controller --out results/bench-controller $(BENCH_CONTROLLER_ARGS)
	$(KUBEHOP) bench --scenario stateful --out results/bench-stateful $(BENCH_STATEFUL_ARGS)

testbed-down:
	$(KUBEHOP) testbed down

clean: testbed-down
	rm -rf $(VENV)
