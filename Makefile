# bhrd — see README.md. Every target works on a fresh Debian machine with Go.
GO        ?= go
BIN       := bin/bhrd
CONFIG    ?= configs/bhrd.yaml
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
PREFIX    ?= /usr
DESTDIR   ?=
STATICCHECK_VERSION ?= 2026.2.2
# The whole suite, with the race detector. CI sets BHRD_REQUIRE_PG=1 and
# BHRD_REQUIRE_ROOT=1 so that missing PostgreSQL or root fails loudly.
TEST_TIMEOUT ?= 20m

.PHONY: all build run test bench lint fuzz clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/bhrd

# Runs the daemon on the embedded store (state/bhrd.db) with the example
# config until Ctrl-C.
run: build
	./$(BIN) serve -config $(CONFIG)

test:
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

# Benchmarks behind the figures in docs/BENCHMARKS.md. They need
# PostgreSQL (started by the test helper) and take several minutes.
bench:
	./scripts/bench.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# Short fuzzing runs of the input parsers.
fuzz:
	$(GO) test -run XXX -fuzz FuzzParseCIDR -fuzztime 30s ./pkg/queue
	$(GO) test -run XXX -fuzz FuzzParseDuration -fuzztime 30s ./pkg/queue

clean:
	rm -rf bin
