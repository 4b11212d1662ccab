# Two commands matter: `make demo` (start everything, stream a synthetic clickstream, show the
# dashboard) and `make test` (the whole suite on real services). Both set up what is missing first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

AXE_VERSION := 4.10.3
AXE := build/vendor/axe-core/axe.min.js

.PHONY: setup system-packages demo test test-fast test-unit lint bench stack-up stack-down clean

setup: $(STAMP) system-packages $(AXE)

# System packages from Debian: redis-server, chromium, poppler-utils (a Java 17 JDK, Maven and Go come with the machine image; the
# stack names what is missing if they do not).
system-packages:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "setup: installing redis-server from Debian"; \
	  (apt-get update -qq && apt-get install -y -qq redis-server >/dev/null) || \
	  { echo "setup: could not install redis-server; run 'apt-get install redis-server' as root"; exit 1; }; }
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "setup: installing chromium from Debian (the web dashboard's browser test)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  { echo "setup: could not install chromium; run 'apt-get install chromium' as root"; exit 1; }; }
	@command -v pdftotext >/dev/null 2>&1 || { \
	  echo "setup: installing poppler-utils from Debian (pdftotext, pdftoppm: the PDF report's test)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null) || \
	  { echo "setup: could not install poppler-utils; run 'apt-get install poppler-utils' as root"; exit 1; }; }
	@for tool in java javac mvn go; do command -v $$tool >/dev/null 2>&1 || \
	  { echo "setup: '$$tool' is missing (need a Java 17 JDK, Maven 3, Go 1.24+): install it, e.g. apt-get install openjdk-17-jdk-headless maven golang"; exit 1; }; done

# axe-core (the browser test's accessibility audit; the page itself never loads it), pinned, from npm's
# registry with its integrity checked by `npm pack`; kept under build/ (not committed), injected by the test.
$(AXE):
	@mkdir -p $(dir $(AXE))
	@command -v npm >/dev/null 2>&1 || { echo "setup: npm is missing (needed once for axe-core): apt-get install npm"; exit 1; }
	@cd $(dir $(AXE)) && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null && \
	  tar -xzf axe-core-$(AXE_VERSION).tgz --strip-components=1 package/axe.min.js package/LICENSE && \
	  rm axe-core-$(AXE_VERSION).tgz
	@echo "setup: axe-core $(AXE_VERSION) in $(dir $(AXE))"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "setup: installing Python dependencies into $(VENV) (cached by pip after the first run)"
	@$(BIN)/pip install -q --upgrade pip
	@$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(BIN)/lakehouse demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	@# the fault drills last, in a session of their own: their stacks run alone on the machine (docs/testing.md);
	@# that session collects tests/integration only (where the `faults` tests live), not the whole suite again
	@status=0; $(BIN)/pytest -q -m "not faults" || status=$$?; \
	  $(BIN)/pytest -q -m faults tests/integration || status=$$?; exit $$status

# The fast tier, no service started (not even Redis): ruff, the import contracts, the unit tests and the
# component tests (the API in process over embedded chDB and a temporary lake, every route; docs/testing.md).
# Needs only the Python packages.
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest -q tests/unit tests/test_definitions.py tests/component

test-unit: setup
	$(BIN)/pytest -q tests/unit tests/test_definitions.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: setup
	$(BIN)/python -m bench.stream_contract
	@# --fresh: the paced phase measures a stream that starts empty, not one clearing an earlier run's millions of ids
	$(BIN)/python -m bench.freshness_throughput --fresh
	$(BIN)/python -m bench.dashboard_latency

stack-up: setup
	$(BIN)/lakehouse stack up

stack-down: setup
	$(BIN)/lakehouse stack down

clean:
	-$(BIN)/lakehouse stack down
	rm -rf .lakehouse
