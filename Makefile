# niteru: the two quick-start commands are `make demo` and `make test`; both set everything up first.
VENV ?= .venv
BIN := $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: install weights demo test test-fast fuzz lint pytest bench-image bench-text bench-api bench-relevance bench-engines clean

install:
	scripts/setup.sh

weights: install

# The similar-products API over the embedded store: ingest a stratified sample of catalog-dev
# (NITERU_DEMO_PRODUCTS, default 3000; resumable) and serve on NITERU_API_HOST:NITERU_API_PORT.
demo: install
	$(BIN)/niteru ingest --demo
	$(BIN)/niteru serve

# lint-imports checks the dependency rules of pyproject.toml's [tool.importlinter] (which package may import which).
lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports

pytest:
	$(BIN)/pytest

# The whole suite (CI): set-up, lint, then every test, the fast tier included.
test: install lint pytest

# The virtualenv, (re)made by the set-up script when pyproject.toml changed since it last ran.
$(VENV)/.niteru-installed: pyproject.toml
	scripts/setup.sh

# The fast tier, under a minute on 2 cores: fake embedders, both store engines, every API route. Tests that
# load the real models are marked slow by tests/conftest.py and left out; so are lint and the weights check.
test-fast: $(VENV)/.niteru-installed
	$(BIN)/pytest -m "not slow" --durations=10

# Generated input against the real app (fake embedders), about 50,000 requests: zero 5xx, every status
# documented, every body JSON. CI runs the same tests with about 3,000 (tests/test_generated_input.py).
fuzz: $(VENV)/.niteru-installed
	NITERU_FUZZ_EXAMPLES=3300 $(BIN)/pytest tests/test_generated_input.py -p no:randomly -q -s

bench-image: install
	$(BIN)/python bench/image_throughput.py

# Text vectors: 20 Newsgroups + livedoor accuracy and catalog speed (tens of minutes on 2 cores).
bench-text: install
	$(BIN)/python bench/text_quality.py

# API latency over the whole catalog-dev (tens of minutes; `--limit 2000` for a quick look).
bench-api: install
	$(BIN)/python bench/api_latency.py --limit 0 --fresh

# Vector engines side by side (qdrant local mode, Edge exact and HNSW, faiss flat) on the real image
# vectors of data/vectors/ (`niteru experiments vectors --set catalog` / `--set augmented`); tens of minutes.
bench-engines: install
	$(BIN)/python bench/engines.py

# Relevance by route over the whole catalog-dev in its own data dir (ingest is resumable; the benchmark
# then runs 2,000 leave-one-out queries in 8 configurations).
RELEVANCE_DATA ?= data/full
bench-relevance: install
	NITERU_DATA_DIR=$(RELEVANCE_DATA) $(BIN)/niteru ingest
	NITERU_DATA_DIR=$(RELEVANCE_DATA) $(BIN)/python bench/relevance.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache .grimp_cache
