# ksmg-appliance: build the appliance images, run the tests, run the benchmarks.
# The two commands a newcomer needs are `make images` and `make test`; both
# install the host packages they need first (ci/deps.sh, idempotent).
SHELL      := /bin/bash
GO         ?= go
BIN        ?= bin
OUT        ?= out
CACHE      ?= $(HOME)/.cache/ksmg
VERSION    := $(shell cat VERSION)
# Packer for the plugin's tests: v1.9.5, the last MPL release, built once
# from module source into the tool cache (ci/packer.sh).
PACKER_VERSION := 1.9.5
PACKER     ?= $(CACHE)/packer/$(PACKER_VERSION)/packer
# Exact module versions are pinned in go.mod; never resolve @latest.
export GOFLAGS  ?= -mod=readonly
export KSMG_CACHE := $(CACHE)

CMDS := $(notdir $(wildcard cmd/*))

.PHONY: all deps build images packer generate test test-go lint audit bench-gateway bench-build bench-formats bench-deploy clean

all: build

deps:
	ci/deps.sh

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/ ./cmd/...

# The appliance disk and its formats, from the default spec.
images: deps build
	$(BIN)/ksmg build --out $(OUT)

# Packer v$(PACKER_VERSION) for the plugin's tests (built once, ~10 CPU-minutes, then cached).
packer:
	@PACKER_VERSION=$(PACKER_VERSION) ci/packer.sh >/dev/null

# The Packer plugin's generated files: HCL2 specs and .web-docs/.
generate:
	ci/generate.sh

lint:
	@# go.mod must be tidy: direct dependencies in the first block, nothing unused.
	@GOFLAGS=-mod=mod $(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy'"; exit 1; }
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=windows $(GO) build ./...
	GOOS=windows $(GO) vet ./...
	@# Generated files (HCL2 specs, .web-docs) must be what go generate makes.
	ci/generate.sh --check
	@# golangci-lint (pinned, built once into the tool cache): zero findings.
	ci/golangci-lint.sh ./...

# Everything CI runs: lint, the images (the boot tests use them), all Go tests.
test: deps lint images packer test-go

test-go:
	KSMG_IMAGE_DIR=$(abspath $(OUT)) KSMG_BIN_DIR=$(abspath $(BIN)) KSMG_PACKER=$(PACKER) ci/test.sh

# Measures the built image (out/): OpenSCAP ANSSI-BP-028 intermediary on a
# copy of its file systems and Lynis inside it booted; builds nothing.
audit: deps
	ci/audit.sh

bench-gateway: deps build
	ci/bench-gateway.sh

bench-build: deps build
	ci/bench-build.sh

bench-formats: deps build
	ci/bench-formats.sh

bench-deploy: build
	ci/bench-deploy.sh

clean:
	rm -rf $(BIN) $(OUT)
