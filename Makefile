# The two set-up commands of the README: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo test bench clean browser

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=24" "setuptools>=77.0.3,<81" wheel
	# torch first: the pinned CPU wheel; a bare torch requirement would pull CUDA packages.
	$(BIN)/pip install -q torch==2.13.0
	# transformers<5 in the same call as unbabel-comet, or pip backtracks to ancient comet releases.
	$(BIN)/pip install -q -e ".[ml,server,test]" "transformers>=4.57,<4.58"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m tower_cat.demo

test: $(STAMP)
	@# the HTML-report test renders in headless chromium; without it (no root, no apt) that test skips
	-@$(MAKE) --no-print-directory browser >/dev/null 2>&1
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/formats.py

# Headless chromium for the HTML report test (tests/test_report.py skips without it).
browser:
	command -v chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

clean:
	rm -rf $(VENV) .cache build *.egg-info
