# Thin targets; the README's two commands are `make run` and `make test`.
VENV      ?= .venv
PY        := $(VENV)/bin/python
MODEL_DIR ?= models
INPUT     ?= test_input.json
export MODEL_DIR

.PHONY: install system-deps bake bake-tiny run serve test lint clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock requirements-dev.lock pyproject.toml
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -q --no-deps -r requirements.lock -r requirements-dev.lock && $(VENV)/bin/pip install -q --no-deps -e . && touch $@

system-deps:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg espeak-ng sox

bake: install
	$(PY) bake_models.py $(MODEL_DIR)

bake-tiny: install
	$(PY) bake_models.py --tiny $(MODEL_DIR)

$(MODEL_DIR)/manifest.json:
	@echo "no models in $(MODEL_DIR): baking tiny random-weight models (output is noise; 'make bake' for real weights)"
	$(MAKE) bake-tiny

run: install $(MODEL_DIR)/manifest.json
	$(PY) -m tts_worker --test_input "$$(cat $(INPUT))"

serve: install $(MODEL_DIR)/manifest.json
	$(PY) -m tts_worker --rp_serve_api --rp_api_host 127.0.0.1 --rp_api_port 8000

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache .mypy_cache
