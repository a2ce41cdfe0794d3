# cellprov: `make demo` runs the main job, `make test` runs every test. Both install what they need.
SWIFT     ?= swift
PREFIX    ?= /usr/local
DESTDIR   ?=
BINDIR    ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR   ?= $(PREFIX)/lib/systemd/system
UDEVDIR   ?= $(PREFIX)/lib/udev/rules.d
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
DATADIR   ?= $(PREFIX)/share/cellprov
# Mender runs the inventory scripts of /usr/share/mender/inventory: with the default PREFIX, install with
# PREFIX=/usr or MENDERINVENTORYDIR=/usr/share/mender/inventory (docs/operations.md, "Mender").
MENDERINVENTORYDIR ?= $(PREFIX)/share/mender/inventory

.PHONY: all deps build build-tests check test test-scripts test-registry demo bench bench-registry bench-incident bench-overview release \
	install clean fuzz sanitize soak

all: build

deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build

build-tests: deps
	$(SWIFT) build --build-tests

# The inner loop (seconds when warm): build, the pure core's tables and the PTY suites of the AT channel, the
# identity reader and the simulator, and the source checks. `make test` runs everything.
check: build-tests
	$(SWIFT) test --skip-build --filter 'CellprovCoreTests|CellprovModemTests'
	scripts/check-locks.sh

# Every test: Swift unit and integration tests (PTYs, simulator, CLI; the registry's storage suite against SQLite
# and a real PostgreSQL that scripts/with-postgres.sh starts and stops, even on failure), then the unit/rules
# checks, then the registry's black-box tests.
# The Swift tests run one at a time (--no-parallel): the PTY, daemon and registry suites drive real processes and
# ports with per-command deadlines, and on 2 cores a parallel run starved them into timeouts.
test: build-tests
	scripts/with-postgres.sh $(SWIFT) test --skip-build --no-parallel
	$(MAKE) test-scripts
	$(MAKE) test-registry

# cellprov-registry black box (Tests/registry/run.sh): every suite Tests/registry/test_*.py declares (run.sh --list):
# e2e with cellprovd and `cellprov probe --report` on SQLite and PostgreSQL, PostgreSQL connections, two instances
# on one PostgreSQL, security (tokens, roles, CSRF, logs), input rules, faults, mutual TLS, schemathesis, the browser.
test-registry:
	CELLPROV_TEST_NO_SKIP=1 Tests/registry/run.sh

# The unit and rules checks, the OpenAPI check, the umockdev hotplug tests, the real-ModemManager D-Bus tests and
# the journald test (with a real systemd-journald; they use the debug build), the short fuzz run, and the demo's
# whole job run by the programs built with ThreadSanitizer (scripts/tsan-demo.sh: a report fails it).
test-scripts:
	scripts/check-systemd-unit.sh
	scripts/check-registry-unit.sh
	scripts/check-no-foundation.sh .build/debug
	scripts/check-locks.sh
	/usr/bin/python3 scripts/check-udev-data.py
	@python3 -c 'import openapi_spec_validator' 2>/dev/null || python3 -m pip install -q openapi-spec-validator || true
	python3 scripts/check-openapi.py
	python3 scripts/check-registry-api.py
	CELLPROV_TEST_NO_SKIP=1 Tests/umockdev/run.sh
	CELLPROV_TEST_NO_SKIP=1 Tests/modemmanager/run.sh
	/usr/bin/python3 Tests/journald/test_journald.py .build/debug
	FUZZ_SECONDS=$${FUZZ_SECONDS:-10} scripts/fuzz.sh $${FUZZ_CI_TARGETS:-at parsers identity ports}
	scripts/tsan-demo.sh

demo: build
	scripts/demo.sh

# Release binaries link the Swift runtime and Foundation statically: a third of the start-up time (measured in
# docs/performance.md), and no dependency on the toolchain's libraries at run time.
release: deps
	$(SWIFT) build -c release --static-swift-stdlib

bench: release
	scripts/bench.sh

# The registry's ingest beside the database's own limit (bench/registry_ingest.py; release build, figures printed):
# PostgreSQL against pgbench's minimal transaction on the same server, SQLite against the same transaction in
# python's sqlite3; 3 rounds x 20 s per side at 1, 16 and 64 clients (about 13 minutes). Arguments through
# BENCH_REGISTRY_ARGS, e.g. "--registry-b OTHER_BINARY --json figures.json"; the boot storm with
# BOOTSTORM_DEVICES=10000; a quick check with BENCH_ROUNDS=1 BENCH_SECONDS=5 BENCH_WARMUP=1.
bench-registry: release
	scripts/with-postgres.sh python3 bench/registry_ingest.py .build/release $(BENCH_REGISTRY_ARGS)

# The incident questions of issue 20 (cellprov-registry-bench incident; release build): 1,000,000 units of ten events
# each bulk-loaded into SQLite and PostgreSQL, then who held an ICCID at a moment, a unit as of a moment and the
# affected-units list of one firmware revision, every answer checked against the load (a wrong one fails), p99s
# against the targets (50 ms, 500 ms). About 10 GB of disk per backend while it runs (removed at the end). Arguments
# through BENCH_INCIDENT_ARGS, e.g. "--units 100000 --samples 200" for a quick run, "--require-targets".
bench-incident: release
	scripts/with-postgres.sh sh -c '.build/release/cellprov-registry-bench incident $(BENCH_INCIDENT_ARGS) \
		--postgres "$$CELLPROV_TEST_POSTGRES_URL"'

# The fleet overview at 100 000 units (issue 17): the store's read and GET /v1/overview's answers, both backends.
bench-overview: release
	scripts/with-postgres.sh sh -c '.build/release/cellprov-registry-bench overview --units 100000 \
		$(BENCH_OVERVIEW_ARGS) --postgres "$$CELLPROV_TEST_POSTGRES_URL"'

install: release
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(UDEVDIR) $(DESTDIR)$(SYSUSERSDIR) \
		$(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(SYSCONFDIR)/cellprov $(DESTDIR)$(DATADIR)
	# One multi-call executable: cellprov, and cellprovd as a hard link to it (it runs the daemon by that name).
	install -s -m 0755 .build/release/cellprov $(DESTDIR)$(BINDIR)/cellprov
	ln -f $(DESTDIR)$(BINDIR)/cellprov $(DESTDIR)$(BINDIR)/cellprovd
	sed 's|/usr/bin/cellprovd|$(BINDIR)/cellprovd|' systemd/cellprovd.service > $(DESTDIR)$(UNITDIR)/cellprovd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/cellprovd.service
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/catalog
	install -m 0644 systemd/cellprov.catalog $(DESTDIR)$(PREFIX)/lib/systemd/catalog/cellprov.catalog
	install -m 0644 systemd/cellprov.sysusers $(DESTDIR)$(SYSUSERSDIR)/cellprov.conf
	install -m 0644 systemd/cellprov.tmpfiles $(DESTDIR)$(TMPFILESDIR)/cellprov.conf
	install -m 0644 udev/*.rules $(DESTDIR)$(UDEVDIR)/
	install -m 0644 udev/ports.tsv $(DESTDIR)$(DATADIR)/ports.tsv
	install -m 0644 config/cellprovd.toml.example $(DESTDIR)$(SYSCONFDIR)/cellprov/cellprovd.toml.example
	# Mender's inventory script: a wrapper exec'ing `cellprov inventory --format mender`.
	install -d $(DESTDIR)$(MENDERINVENTORYDIR)
	sed 's|/usr/bin/cellprov|$(BINDIR)/cellprov|' mender/mender-inventory-cellprov \
		> $(DESTDIR)$(MENDERINVENTORYDIR)/mender-inventory-cellprov
	chmod 0755 $(DESTDIR)$(MENDERINVENTORYDIR)/mender-inventory-cellprov
	# cellprov-registry (docs/registry.md): its own executable, unit, user and directories.
	install -s -m 0755 .build/release/cellprov-registry $(DESTDIR)$(BINDIR)/cellprov-registry
	sed 's|/usr/bin/cellprov-registry|$(BINDIR)/cellprov-registry|' systemd/cellprov-registry.service \
		> $(DESTDIR)$(UNITDIR)/cellprov-registry.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/cellprov-registry.service
	install -m 0644 systemd/cellprov-registry.sysusers $(DESTDIR)$(SYSUSERSDIR)/cellprov-registry.conf
	install -m 0644 systemd/cellprov-registry.tmpfiles $(DESTDIR)$(TMPFILESDIR)/cellprov-registry.conf

# Robustness (docs/robustness.md). `make fuzz`: every libFuzzer target for FUZZ_SECONDS each (300); `make test`
# runs the four that need only CellprovCore/CellprovModem built with the fuzzer (FUZZ_CI_TARGETS) for 10 s each.
# `make sanitize`: the Swift tests under AddressSanitizer, then ThreadSanitizer.
# `make soak`: cellprovd, 16 simulated modems with SIM swaps and unplugs, a failing receiver, SOAK_SECONDS (600).
fuzz: deps
	FUZZ_SECONDS=$${FUZZ_SECONDS:-300} scripts/fuzz.sh

sanitize: deps
	scripts/sanitize.sh

soak: build
	scripts/soak.sh

clean:
	$(SWIFT) package clean
