# kefu — two commands for a new machine: `make demo` and `make test`. Both set up the environment first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kefu-setup

.PHONY: setup browser test test-fast lint demo up clean

PROTO_CODE := proto/kefu/gateway/v1/chat_pb2_grpc.py

setup: $(STAMP) $(PROTO_CODE)

# Idempotent: re-runs only when pyproject.toml changes. torch goes in FIRST and pinned: a bare `torch`
# requirement would pull a multi-GB CUDA build; 2.13.0 resolves to the CPU wheel on these machines.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	@touch $(STAMP)

# gRPC code is generated from the contracts, not committed (proto/generate.sh).
$(PROTO_CODE): $(STAMP) $(wildcard proto/kefu/*/v1/*.proto)
	PYTHON=$(BIN)/python sh proto/generate.sh

# The review-page test drives a real headless Chromium (Debian's package); installed once when we are root.
browser:
	@command -v chromedriver >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) || \
	  echo "note: chromium/chromedriver not installed; the review page browser test will be skipped"; }

# Two workers by default (each gets its own broker, database and Triton); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2

test: setup browser
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

test-fast: setup
	$(BIN)/pytest -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

demo: setup
	$(BIN)/kefu demo

up: setup
	$(BIN)/kefu up

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
