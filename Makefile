# wormsink: `make run` starts the sinkhole on unprivileged loopback ports with
# the built-in signatures; `make test` installs what the tests need and runs them.
GO       ?= go
BIN      ?= bin/wormsink
FUZZTIME ?= 60s
PKGS     := ./...
# The version `wormsink version` prints: git's name for the commit; without
# git the binary falls back to the build info Go stamps in.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null)
LDFLAGS  := $(if $(VERSION),-X main.version=$(VERSION))

.PHONY: all build run test docs test-root-note vet fmt-check deps bench fuzz soak perf-dns perf-report perf-wire perf-capture perf-tftp install perf-rpz clean perf-intercept perf-dns-cpu perf-desk perf-desk-pages perf-radius-dns

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/wormsink

run: build
	./scripts/run.sh $(BIN)

deps:
	./scripts/deps.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on: $$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

test: test-root-note deps fmt-check vet
	$(GO) test -race -count=1 -timeout 40m $(PKGS)

# Said once, at the top: the tests that need root then fail with "needs root".
test-root-note:
	@[ "$$(id -u)" -eq 0 ] || echo 'make test: needs root (it installs the test packages, opens raw sockets, makes network namespaces); as $(shell id -un), the tests that need root fail with "needs root"' >&2

# docs/flags.md, docs/metrics.md and docs/packages.md from the code (the flag sets,
# the collectors serve registers, the package comments; root, as the capture
# part must bind), and links in docs/README.md to the pages it lacks; tests
# fail when the committed files drift.
docs:
	$(GO) test -count=1 -run '^(Test(Flag|Metrics|Package)Reference|TestDocsIndexLinksEveryPage)$$' ./cmd/wormsink -args -update-docs

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# Every Fuzz target in the tree, FUZZTIME each (make fuzz FUZZTIME=10s).
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' .); do \
	  dir=$$(dirname $$f); \
	  for t in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | cut -c6-); do \
	    echo "== $$dir $$t ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$dir; \
	  done; \
	done

# Long-running checks, not part of make test.
soak: deps
	SOAK_SECONDS=$${SOAK_SECONDS:-600} ./scripts/soak.sh

perf-dns: deps
	./testdata/dns/perf.sh $(NAMES) $(SECONDS)

# CPU per query of the shim and Unbound at fixed rates, side by side.
perf-dns-cpu: deps
	./scripts/perf-dns-cpu.sh

# The abuse desk's load run: SENSORS wormsink ship processes, each writing
# RATE lines/s for DURATION, into one wormsink desk on PostgreSQL restarted
# twice (PostgreSQL once); prints lines shipped, stored, duplicated, lost,
# the ship lag and the desk's CPU.
SENSORS  ?= 20
RATE     ?= 500
DURATION ?= 10m
perf-desk: deps
	$(GO) test -count=1 -v -timeout 0 -run '^TestDeskLoad$$' ./ship \
	  -args -desk-load.sensors=$(SENSORS) -desk-load.rate=$(RATE) -desk-load.duration=$(DURATION)

# The desk's pages on a desk seeded with SIGHTINGS evidence lines in CASES
# cases, on SQLite and PostgreSQL: server time of the list, a case page
# and searches (PAGESDB=sqlite or postgres for one of them).
SIGHTINGS ?= 10000000
CASES     ?= 100000
PAGESDB   ?= sqlite,postgres
perf-desk-pages: deps
	$(GO) test -count=1 -v -timeout 0 -run '^$$' -bench '^BenchmarkPages$$' -benchtime 50x ./desk \
	  -args -desk-pages.sightings=$(SIGHTINGS) -desk-pages.cases=$(CASES) -desk-pages.db=$(PAGESDB)

# report against wc -l on every log shape of internal/loggen (MIX_ONLY=1
# stops there), then on the writer's own log against one core and jq.
perf-report: deps
	./scripts/report-perf-mix.sh
	[ "$${MIX_ONLY:-0}" = 1 ] || ./scripts/report-perf.sh

# The shim's DNS rate alone and while RADIUS accounting arrives (RATE=1000/s).
perf-radius-dns: deps
	./scripts/perf-radius-dns.sh

perf-wire: deps
	./scripts/perf-wire.sh

# Live capture at tcpreplay's top speed, side by side with tcpdump (root).
perf-capture: deps
	./scripts/perf-capture.sh

# RPZ primary (AXFR against BIND, NOTIFY/IXFR to Unbound and BIND) and dnstap ingest.
perf-rpz: deps
	./scripts/perf-rpz.sh $(NAMES)

perf-tftp: deps
	$(GO) build -o bin/sinkserver ./testdata/tftp/sinkserver
	$(GO) build -o bin/loadgen ./testdata/tftp/loadgen
	./bin/loadgen -compare -sinkserver bin/sinkserver -duration 5s -conc 32

# The service as deploy/ describes it (as root; DESTDIR to stage it
# elsewhere). An existing /etc/wormsink/wormsink.yaml or signatures.yaml is
# kept; the configuration, which may hold secrets, is made 0640 either way.
PREFIX ?= /usr/local
DOC    := $(DESTDIR)/usr/share/doc/wormsink
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/wormsink
	install -D -m 0644 deploy/wormsink.service $(DESTDIR)/etc/systemd/system/wormsink.service
	install -D -m 0644 deploy/wormsink.logrotate $(DESTDIR)/etc/logrotate.d/wormsink
	install -D -m 0644 README.md $(DOC)/README.md
	install -d -m 0755 $(DOC)/docs $(DOC)/resolvers
	install -m 0644 docs/*.md $(DOC)/docs/  # README.md links them as docs/
	install -m 0644 deploy/resolvers/* $(DOC)/resolvers/
	install -m 0644 deploy/wormsink-resolvers.yaml $(DOC)/wormsink-resolvers.yaml
	install -D -m 0644 signatures/default.yaml $(DOC)/signatures/default.yaml
	install -d -m 0755 $(DESTDIR)/etc/wormsink
	[ -e $(DESTDIR)/etc/wormsink/wormsink.yaml ] || install -m 0640 deploy/wormsink.yaml $(DESTDIR)/etc/wormsink/wormsink.yaml
	chmod 0640 $(DESTDIR)/etc/wormsink/wormsink.yaml
	[ -e $(DESTDIR)/etc/wormsink/signatures.yaml ] || install -m 0644 signatures/default.yaml $(DESTDIR)/etc/wormsink/signatures.yaml
	# TFTP interception: installed, not enabled (the drop-in goes to the docs;
	# copy it to /etc/systemd/system/wormsink.service.d/ on a router that intercepts).
	install -D -m 0755 deploy/wormsink-tftp-intercept.sh $(DESTDIR)$(PREFIX)/sbin/wormsink-tftp-intercept.sh
	[ -e $(DESTDIR)/etc/wormsink/tftp-intercept.nft ] || install -m 0644 deploy/tftp-intercept.nft $(DESTDIR)/etc/wormsink/tftp-intercept.nft
	install -D -m 0644 deploy/wormsink-intercept.conf $(DESTDIR)/usr/share/doc/wormsink/wormsink-intercept.conf

clean:
	rm -rf bin

# Transparent TFTP interception in namespaces: pass-through within 1.1x of
# the direct transfer, refusal median under 1 ms (needs root).
perf-intercept: deps
	WORMSINK_PERF=1 $(GO) test -count=1 -v -run '^TestInterceptNamespaces$$' ./cmd/wormsink
