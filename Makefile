# bhrd — see README.md. Every target works on a fresh Debian 12 machine
# with make: the go to use is found, or installed from Debian's packages,
# by scripts/deps.sh (which says on the terminal what it installs), and
# Go's toolchain switching fetches the release go.mod names. GO=... uses
# another go.
GO        ?= $$(./scripts/deps.sh go)
export GOTOOLCHAIN ?= auto
BIN       := bin/bhrd
CONFIG    ?= configs/bhrd.yaml
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
PREFIX    ?= /usr
DESTDIR   ?=
STATICCHECK_VERSION ?= v0.8.2
# The whole suite, with the race detector. CI sets BHRD_REQUIRE_PG=1,
# _ROOT, _BIRD and _FRR=1 so that a missing part fails loudly.
TEST_TIMEOUT ?= 20m

.PHONY: all build run test deps bench lint fuzz clean install verify-unit

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/bhrd

# Runs the daemon on the embedded store (state/bhrd.db) with the example
# config until Ctrl-C.
run: build
	$(BIN) serve -config $(CONFIG)

# Installs what the suite needs when it is missing (scripts/deps.sh test:
# PostgreSQL's server, bird2, frr, memcached, ...; with sudo unless
# root), then runs it.
test: deps
	@$(GO) version
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

# The set-up alone: a go, and the packages the tests use.
deps:
	@./scripts/deps.sh go >/dev/null
	@./scripts/deps.sh test

# Benchmarks behind the figures in docs/BENCHMARKS.md. They need
# PostgreSQL (started by the test helper) and take several minutes.
bench:
	@./scripts/deps.sh bench
	PATH="$$(dirname $(GO)):$$PATH" ./scripts/bench.sh

lint:
	./scripts/check-tree.sh
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	$(MAKE) verify-unit

# systemd-analyze verify needs ExecStart to exist: check a copy of the
# unit pointing at the freshly built binary.
verify-unit: build
	@if command -v systemd-analyze >/dev/null; then \
	  d=$$(mktemp -d); sed "s|/usr/bin/bhrd|$(CURDIR)/$(BIN)|" deploy/systemd/bhrd.service > $$d/bhrd.service; \
	  systemd-analyze verify --man=no $$d/bhrd.service && echo "systemd-analyze verify: ok"; rc=$$?; rm -rf $$d; [ $$rc = 0 ] || exit $$rc; \
	  d=$$(mktemp -d); mkdir -p $$d/etc/bhrd; touch $$d/etc/bhrd/bhrd.yaml; \
	  printf 'root:x:0:0::/root:/bin/sh\nbhrd:x:990:990::/var/lib/bhrd:/usr/sbin/nologin\n' > $$d/etc/passwd; \
	  printf 'root:x:0:\nbhrd:x:990:\n' > $$d/etc/group; \
	  systemd-tmpfiles --root=$$d --create $(CURDIR)/deploy/systemd/bhrd.tmpfiles && \
	  [ "$$(stat -c %a:%g $$d/etc/bhrd/bhrd.yaml)" = 640:990 ] && echo "systemd-tmpfiles: ok"; rc=$$?; rm -rf $$d; exit $$rc; \
	else echo "systemd-analyze not installed: unit not verified"; fi

# Installs the way a Debian package would: binary, unit, sysusers and
# tmpfiles entries, and the example config (never overwriting an existing
# one). Then: systemd-sysusers; systemd-tmpfiles --create; see
# docs/OPERATIONS.md.
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/bhrd
	install -D -m 0644 deploy/systemd/bhrd.service $(DESTDIR)/lib/systemd/system/bhrd.service
	install -D -m 0644 deploy/systemd/bhrd.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/bhrd.conf
	install -D -m 0644 deploy/systemd/bhrd.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/bhrd.conf
	install -D -m 0644 deploy/iproute2/bhrd.conf $(DESTDIR)/etc/iproute2/rt_protos.d/bhrd.conf
	install -D -m 0644 docs/OPERATIONS.md $(DESTDIR)$(PREFIX)/share/doc/bhrd/OPERATIONS.md
	@if [ -e $(DESTDIR)/etc/bhrd/bhrd.yaml ]; then \
	  echo "keeping existing $(DESTDIR)/etc/bhrd/bhrd.yaml; new example in bhrd.yaml.dist"; \
	  install -D -m 0640 configs/bhrd.yaml $(DESTDIR)/etc/bhrd/bhrd.yaml.dist; \
	else install -D -m 0640 configs/bhrd.yaml $(DESTDIR)/etc/bhrd/bhrd.yaml; fi

# Short fuzzing runs: the input parsers, the whole HTTP router on both
# stores (any 5xx fails), the DNSBL answer paths.
fuzz:
	$(GO) test -run XXX -fuzz FuzzParseCIDR -fuzztime 30s ./pkg/queue
	$(GO) test -run XXX -fuzz FuzzParseDuration -fuzztime 30s ./pkg/queue
	$(GO) test -run XXX -fuzz FuzzScanIDs -fuzztime 30s ./pkg/api
	$(GO) test -run XXX -fuzz FuzzRouterSQLite -fuzztime 60s ./pkg/api
	$(GO) test -run XXX -fuzz FuzzRouterPostgres -fuzztime 60s ./pkg/api
	$(GO) test -run XXX -fuzz FuzzAnswer -fuzztime 30s ./pkg/dnsbl
	$(GO) test -run XXX -fuzz FuzzFastPath -fuzztime 30s ./pkg/dnsbl

clean:
	rm -rf bin
