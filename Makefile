# stylefinder developer loop. `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := .demo
PORT   ?= 8501
# pytest-xdist workers: one per core; `make test WORKERS=0` runs the tests in one process
WORKERS ?= auto
DEBIAN_PACKAGES := dataset-fashion-mnist chromium chromium-driver

.DEFAULT_GOAL := help
.PHONY: help setup test test-all lint format demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install everything (idempotent, quick when done)

$(STAMP): pyproject.toml
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "note: Debian packages missing ($$missing); install them as root for the full data set"; fi; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[torch,test,lite2,resnet,clip,app,serve,eval,postgres,ray]'
	@echo "compiling the colour kernels (numba, once per install)"
	$(BIN)/python -c 'from stylefinder.recognize.colours import warm_up; warm_up()'
	touch $@

lint: setup ## ruff lint and format check, and the import layers (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: setup ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint ## lint, then the default (fast, offline) tests, one worker per core
	$(BIN)/pytest -q -n $(WORKERS) --dist worksteal

test-all: lint ## lint, then every test including the slow ones
	$(BIN)/pytest -q -n $(WORKERS) --dist worksteal -m ''

demo: setup ## build the demo catalog and index, show recommendations, start the web app
	$(BIN)/stylefinder demo-data $(DEMO)/catalog --queries $(DEMO)/queries
	$(BIN)/stylefinder index $(DEMO)/catalog --index $(DEMO)/index --meta $(DEMO)/catalog/catalog.csv
	$(BIN)/stylefinder recommend $(DEMO)/queries/t-shirt-top-1.png --index $(DEMO)/index -k 5
	$(BIN)/python benchmarks/demo_queries.py --index $(DEMO)/index --queries $(DEMO)/queries
	$(BIN)/stylefinder app --index $(DEMO)/index --port $(PORT)

clean: ## remove the demo data and caches (keeps .venv)
	rm -rf $(DEMO) .pytest_cache .ruff_cache
