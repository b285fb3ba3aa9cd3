# The two set-up commands of the README: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The exact versions the suite passed with (pip constraints). `make upgrade` re-resolves and rewrites it.
LOCK := constraints.txt
EXTRAS := ml,server,test

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo test bench clean browser upgrade remote-deps postgres

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=24" "setuptools>=77.0.3,<81" wheel
	# torch first: the pinned CPU wheel; a bare torch requirement would pull CUDA packages.
	$(BIN)/pip install -q -c $(LOCK) torch==2.13.0
	# everything else at the locked versions (transformers<5 stays in the same call as unbabel-comet).
	$(BIN)/pip install -q -c $(LOCK) -e ".[$(EXTRAS)]" "transformers>=4.57,<4.58"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m tower_cat.demo

test: $(STAMP)
	@# the HTML-report test renders in headless chromium; without it (no root, no apt) that test skips
	-@$(MAKE) --no-print-directory browser >/dev/null 2>&1
	@# llama.cpp's server for the remote-backend tests; their tests skip when this could not be installed
	-@$(MAKE) --no-print-directory remote-deps
	@# PostgreSQL server binaries for the team-TM tests (a cluster in a temp dir); they skip without them
	-@$(MAKE) --no-print-directory postgres >/dev/null 2>&1
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/formats.py

# Test-only: llama.cpp's OpenAI-compatible server (llama-cpp-python builds from source once, ~4-12 minutes on
# 2 cores; pip's wheel cache reuses the build afterwards) and its source distribution, which ships llama.cpp's
# HF -> GGUF converter (tower_cat/testing_gguf.py). Never needed by `make demo` or by users.
LLAMA_CPP_VERSION := 0.3.36
remote-deps: $(STAMP)
	$(BIN)/python -c "import llama_cpp.server" 2>/dev/null || $(BIN)/pip install -q -c $(LOCK) "llama-cpp-python[server]==$(LLAMA_CPP_VERSION)"
	mkdir -p .cache/sdist
	test -f .cache/sdist/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz || \
		$(BIN)/pip download -q --no-deps --no-binary :all: "llama-cpp-python==$(LLAMA_CPP_VERSION)" -d .cache/sdist

# PostgreSQL 15 server binaries (initdb, pg_ctl) for tests/conftest_pg.py, from Debian when they are missing.
postgres:
	command -v initdb || ls /usr/lib/postgresql/*/bin/initdb || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql)

# Headless chromium for the HTML report test (tests/test_report.py skips without it).
browser:
	command -v chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# Re-resolve every dependency in a fresh venv (pins of pyproject.toml only, no lock), run the whole suite there,
# and only when it passes rewrite $(LOCK) with what was installed. Review and commit the diff of $(LOCK).
upgrade:
	rm -rf .venv-upgrade
	$(PY) -m venv .venv-upgrade || python3 -m venv .venv-upgrade
	.venv-upgrade/bin/pip install -q --upgrade "pip>=24" "setuptools>=77.0.3,<81" wheel
	.venv-upgrade/bin/pip install -q torch==2.13.0
	.venv-upgrade/bin/pip install -q -e ".[$(EXTRAS)]" "transformers>=4.57,<4.58"
	.venv-upgrade/bin/python -m pytest -q -p no:cacheprovider
	.venv-upgrade/bin/python tools/write_lock.py .venv-upgrade $(LOCK)
	rm -rf .venv-upgrade
	# the new lock takes effect at the next `make venv` (the stamp depends on it)

clean:
	rm -rf $(VENV) .cache build *.egg-info
