# The two commands of README.md are `make demo` and `make test`; the rest are their parts.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-fast lint generate binaries system-deps venv clean bench bench-quick bench-integrity bench-soak bench-images bench-scale bench-scale-quick image image-verifier lock sbom

## demo: a small real cluster (node included), modelward installed by helm from its own image;
##       what it denies and patches, a signed model served, a tampered one held in Init
demo: venv binaries system-deps
	$(PY) hack/demo.py

## test: every test — unit, contract, end-to-end against a real kube-apiserver — and the linters
test: venv binaries system-deps lint
	$(PY) -m pytest

## test-fast: unit and contract tests only (no control plane)
test-fast: venv
	$(PY) -m pytest -m "not e2e and not slow"

## bench: admission benchmarks (engine, HTTPS vs a no-op webhook, through kube-apiserver, memory)
bench: venv binaries
	$(PY) -m bench.admission

bench-quick: venv binaries
	$(PY) -m bench.admission --quick

## bench-scale: operator RSS, start-up and admission latency with 10k namespaces+Services+Pods
##              and with 50k Pods in 2k namespaces (local kube-apiserver, no kubelets)
bench-scale: venv binaries
	$(PY) -m bench.scale

bench-scale-quick: venv binaries
	$(PY) -m bench.scale --quick

## bench-soak: mixed legitimate and hostile traffic against the webhook port for 3 minutes
bench-soak: venv
	$(PY) -m bench.soak

## bench-images: registry look-ups: warm admission vs none, cold look-ups (vs oras-py), layer listing, outages;
##               and the cold cost of signatures + referrers (needs cosign: make binaries)
bench-images: venv
	$(PY) -m bench.images
	PYTHONPATH=operator:hack:. $(PY) -m bench.images.trust_bench

## bench-integrity: verify vs model_signing and the SHA-256 limit; scan vs picklescan/modelscan
bench-integrity: venv
	$(PY) bench/integrity/bench_verify.py
	test -x /tmp/bench-venv/bin/python || ($(PYTHON) -m venv /tmp/bench-venv && \
		/tmp/bench-venv/bin/pip install --quiet picklescan modelscan)
	$(PY) bench/integrity/bench_scan.py

lint: venv
	$(VENV)/bin/ruff check operator hack tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

## generate: regenerate manifests/crds and charts/modelward/files/crds from the schema source
generate: venv
	$(VENV)/bin/modelward crds --write

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml operator/requirements.lock
	@echo ">> creating $(VENV) and installing modelward with its test extras"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	# the runtime dependencies exactly as locked (the images are built from this venv)
	$(VENV)/bin/pip install --quiet --require-hashes --no-deps -r operator/requirements.lock
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

## binaries: build kube-apiserver, etcd, kubectl, helm, and the test node's kubelet,
## kube-scheduler, kube-controller-manager and containerd from the Go module proxy (cached),
## and cosign for the image-signature tests
binaries:
	hack/build-control-plane.sh
	hack/build-node.sh
	hack/build-cosign.sh

## image: modelward's image built from files (no Docker engine), reproducibly, as an OCI layout
## in $(IMAGE_DIR); `make image PUSH=host:port/repo:tag` also pushes it (INSECURE=1: plain HTTP;
## CA_CERT=ca.pem: the CA of the registry's certificate; REGISTRY_USER/REGISTRY_PASSWORD: basic auth)
IMAGE_DIR ?= dist/image
image: venv
	rm -rf $(IMAGE_DIR)
	PYTHONPATH=hack $(PY) -m modelward_dev.images modelward --output $(IMAGE_DIR) \
		$(if $(PUSH),--push $(PUSH)) $(if $(INSECURE),--insecure) $(if $(CA_CERT),--ca-cert $(CA_CERT))

## image-verifier: the slim verifier image (modelward + cryptography + blake3), as an OCI layout
VERIFIER_IMAGE_DIR ?= dist/verifier-image
image-verifier: venv
	rm -rf $(VERIFIER_IMAGE_DIR)
	PYTHONPATH=hack $(PY) -m modelward_dev.images verifier --output $(VERIFIER_IMAGE_DIR) \
		$(if $(PUSH),--push $(PUSH)) $(if $(INSECURE),--insecure) $(if $(CA_CERT),--ca-cert $(CA_CERT))

## lock: pin the runtime dependencies with hashes (operator/requirements.lock, used by the
##       Dockerfile and the image builder; the verifier's subset in operator/verifier.lock)
lock: venv
	$(VENV)/bin/uv pip compile pyproject.toml --python-version 3.11 --universal \
		--generate-hashes -o operator/requirements.lock
	$(VENV)/bin/uv pip compile operator/verifier.in --python-version 3.11 --universal \
		--generate-hashes -c operator/requirements.lock -o operator/verifier.lock
	$(VENV)/bin/uv pip compile operator/build.in --python-version 3.11 --universal \
		--generate-hashes -o operator/build.lock

## sbom: CycloneDX SBOM of modelward's image, from the lock file (dist/sbom.cdx.json)
sbom: venv
	mkdir -p dist
	$(VENV)/bin/cyclonedx-py requirements operator/requirements.lock --pyproject pyproject.toml \
		--mc-type application --output-reproducible --of JSON --validate -o dist/sbom.cdx.json
	$(VENV)/bin/cyclonedx-py requirements operator/verifier.lock --pyproject pyproject.toml \
		--mc-type application --output-reproducible --of JSON --validate \
		-o dist/sbom-verifier.cdx.json

## system-deps: Debian packages the tests use (Prometheus, containerd, runc, CNI plugins, a registry, busybox)
system-deps:
	hack/install-system-deps.sh

clean:
	$(PY) hack/demo.py --stop || true
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
