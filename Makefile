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
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg espeak-ng sox gcc

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

# --- Container image (Dockerfile.runpod; docs/DEPLOY.md) --------------------------------------
IMAGE         ?= tts-worker:dev
SMOKE_DIR     ?= build/smoke
SMOKE_BASE    ?= localhost/debian-smoke:bookworm
SMOKE_TAG     ?= localhost/tts-worker:smoke
DEBIAN_MIRROR ?= http://deb.debian.org/debian
# Extra `buildah bud` arguments, e.g. a CA bundle and pip.conf mounted into RUN steps behind a TLS proxy.
SMOKE_BUD_ARGS ?=

.PHONY: lint-docker image smoke-base smoke-image smoke-run

lint-docker: install
	$(VENV)/bin/hadolint --no-color Dockerfile.runpod

image:
	docker build -f Dockerfile.runpod --secret id=hf_token,env=HF_TOKEN -t $(IMAGE) .

# Smoke build, daemonless and without a registry: a debootstrapped Debian 12 as every base image,
# tiny random models, no flash-attn, then one job inside the container. Slow (the lock is ~8 GB):
# not part of `make test`.
$(SMOKE_DIR)/rootfs/etc/os-release:
	debootstrap --variant=minbase bookworm $(SMOKE_DIR)/rootfs $(DEBIAN_MIRROR)

smoke-base: $(SMOKE_DIR)/rootfs/etc/os-release
	buildah inspect $(SMOKE_BASE) >/dev/null 2>&1 || { c=$$(buildah from scratch) && tar -C $(SMOKE_DIR)/rootfs --exclude='./dev/*' --exclude='./proc/*' -c . | tar -C "$$(buildah mount $$c)" -x && buildah umount $$c && buildah commit --rm $$c $(SMOKE_BASE); }

smoke-image: smoke-base
	buildah bud --isolation chroot --format docker --layers $(SMOKE_BUD_ARGS) -f Dockerfile.runpod --build-arg BUILDER_IMAGE=$(SMOKE_BASE) --build-arg RUNTIME_IMAGE=$(SMOKE_BASE) --build-arg FLASH_ATTN_WHEEL= --build-arg TINY_MODELS=1 -t $(SMOKE_TAG) . && $(MAKE) smoke-run

smoke-run:
	c=$$(buildah from $(SMOKE_TAG)) && buildah run --isolation chroot $$c -- python -m tts_worker --test_input "$$(cat $(INPUT))"; rc=$$?; buildah rm $$c >/dev/null; exit $$rc

.PHONY: bench
bench: install
	$(PY) bench/bench.py --write docs/PERFORMANCE.md
