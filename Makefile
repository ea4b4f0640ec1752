# ksmg-appliance: build the appliance images, run the tests, run the benchmarks.
# The two commands a newcomer needs are `make images` and `make test`; both
# install the host packages they need first (ci/deps.sh, idempotent).
SHELL      := /bin/bash
GO         ?= go
BIN        ?= bin
OUT        ?= out
CACHE      ?= $(HOME)/.cache/ksmg
VERSION    := $(shell cat VERSION)
# Exact module versions are pinned in go.mod; never resolve @latest.
export GOFLAGS  ?= -mod=readonly
export KSMG_CACHE := $(CACHE)

CMDS := $(notdir $(wildcard cmd/*))

.PHONY: all deps build images test test-go lint bench-gateway bench-build bench-formats bench-deploy clean

all: build

deps:
	ci/deps.sh

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/ ./cmd/...

# The appliance disk and its formats, from the default spec.
images: deps build
	$(BIN)/ksmg build --out $(OUT)

lint:
	@# go.mod must be tidy: direct dependencies in the first block, nothing unused.
	@GOFLAGS=-mod=mod $(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy'"; exit 1; }
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=windows $(GO) build ./...
	GOOS=windows $(GO) vet ./...

# Everything CI runs: lint, the images (the boot tests use them), all Go tests.
test: deps lint images test-go

test-go:
	KSMG_IMAGE_DIR=$(abspath $(OUT)) KSMG_BIN_DIR=$(abspath $(BIN)) ci/test.sh

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
