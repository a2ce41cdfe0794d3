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

.PHONY: all deps build build-tests test test-swift test-scripts demo bench release install clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build

build-tests: deps
	$(SWIFT) build --build-tests

# Every test: Swift unit and integration tests (PTYs, simulator, CLI), then the unit/rules checks.
test: build-tests
	$(SWIFT) test --skip-build
	$(MAKE) test-scripts

test-scripts:
	@if [ -x scripts/check-systemd-unit.sh ]; then scripts/check-systemd-unit.sh; fi
	@if [ -f scripts/check-udev-data.py ]; then python3 scripts/check-udev-data.py; fi

demo: build
	scripts/demo.sh

release: deps
	$(SWIFT) build -c release

bench: release
	scripts/bench.sh

install: release
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(UDEVDIR) $(DESTDIR)$(SYSUSERSDIR) \
		$(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(SYSCONFDIR)/cellprov $(DESTDIR)$(DATADIR)
	install -m 0755 .build/release/cellprov .build/release/cellprovd $(DESTDIR)$(BINDIR)/
	install -m 0644 systemd/cellprovd.service $(DESTDIR)$(UNITDIR)/
	install -m 0644 systemd/cellprov.sysusers $(DESTDIR)$(SYSUSERSDIR)/cellprov.conf
	install -m 0644 systemd/cellprov.tmpfiles $(DESTDIR)$(TMPFILESDIR)/cellprov.conf
	install -m 0644 udev/*.rules $(DESTDIR)$(UDEVDIR)/
	install -m 0644 udev/ports.tsv $(DESTDIR)$(DATADIR)/ 2>/dev/null || true
	install -m 0644 config/cellprovd.toml.example $(DESTDIR)$(SYSCONFDIR)/cellprov/cellprovd.toml.example

clean:
	$(SWIFT) package clean
