# Every target sets up what it needs: a local virtualenv in .venv, pinned
# helm/kubectl in .tools/bin and the manifest checkers in .venv-tools.
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TOOLS_VENV ?= .venv-tools
# pip here lists every local mirror it skips; keep real errors only.
QUIET_PIP := 2>&1 | { grep -v "^WARNING: Location" || true; }
PYTEST_ARGS ?=
# Extra local runner flags for `make demo`, e.g. DEMO_ARGS="--set training.maxSteps=200" (short).
DEMO_ARGS ?=

.PHONY: help install tools test test-fast image-test bench demo lint clean k8s k8s-check chart-docs chart-docs-check

help:
	@echo "make demo       train LeNet-5 on 2 local workers with an evaluator (the main job)"
	@echo "make test       every test (unit, multi-process, chart checks)"
	@echo "make test-fast  the tests not marked slow"
	@echo "make image-test build the image with podman and run the chart's pods as containers"
	@echo "make bench      throughput, scaling and accuracy figures -> bench/results/"
	@echo "make lint       ruff over the Python sources"
	@echo "make install    create .venv with the package (CPU TensorFlow) and test tools"
	@echo "make tools      pinned helm/kubectl and the manifest checkers"
	@echo "make k8s        regenerate k8s/ from the chart (k8s-check: fail if stale)"
	@echo "make chart-docs the chart README's parameter tables and the schema's descriptions"
	@echo "                from values.yaml's @param comments (chart-docs-check: fail if stale)"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[cpu,test]' $(QUIET_PIP)
	touch $@

install: $(VENV)/.installed

$(TOOLS_VENV)/.installed: requirements-tools.txt
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install -q -r requirements-tools.txt $(QUIET_PIP)
	touch $@

tools: $(TOOLS_VENV)/.installed
	bash scripts/install_k8s_tools.sh
	bash scripts/install_chart_docs_tool.sh --optional

# `make test` runs in two phases: the tests not marked serial spread over TEST_WORKERS processes
# (pytest-xdist; each test module stays on one, so its module fixtures run once), then the serial
# ones alone, one at a time (several training processes each, and timing assertions that a
# second busy process could break). Slow tests without such assertions run in the first phase.
# The result is the worse of the two (pytest's 5, nothing collected, only when neither phase
# ran a test, e.g. for a PYTEST_ARGS selection).
TEST_WORKERS ?= 2
PARALLEL := -n $(TEST_WORKERS) --dist loadscope

test: install tools
	parallel=0; serial=0; \
	$(PY) -m pytest tests -m "not serial and not image" $(PARALLEL) $(PYTEST_ARGS) || parallel=$$?; \
	$(PY) -m pytest tests -m "serial and not image" $(PYTEST_ARGS) || serial=$$?; \
	if [ $$parallel = 5 ] && [ $$serial = 5 ]; then exit 5; fi; \
	if [ $$parallel = 5 ]; then parallel=0; fi; if [ $$serial = 5 ]; then serial=0; fi; \
	exit $$(( parallel > serial ? parallel : serial ))

test-fast: install tools
	$(PY) -m pytest tests -m "not slow and not image" $(PARALLEL) $(PYTEST_ARGS)

# Builds the Dockerfile with podman on a debootstrap base and runs the chart's
# pods as containers (root, podman, debootstrap; .ci/run installs them).
image-test: install tools
	$(PY) -m pytest tests/image -m image $(PYTEST_ARGS)

bench: install
	$(PY) -m bench.run

demo: install
	$(PY) scripts/demo.py $(DEMO_ARGS)

lint: install
	$(PY) -m pip install -q ruff==0.17.5 $(QUIET_PIP)
	$(VENV)/bin/ruff check model mnistctl tests scripts bench

k8s: tools
	bash scripts/render_k8s.sh

k8s-check: tools
	bash scripts/render_k8s.sh --check

# Needs node and npm (Debian: apt-get install nodejs npm).
chart-docs: install
	bash scripts/install_chart_docs_tool.sh
	$(PY) -m scripts.chart_docs

chart-docs-check: install
	bash scripts/install_chart_docs_tool.sh
	$(PY) -m scripts.chart_docs --check

clean:
	rm -rf $(VENV) $(TOOLS_VENV) .tools .pytest_cache runs
