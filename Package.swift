// swift-tools-version: 6.0
import PackageDescription

/// Our own targets build with warnings as errors (dependencies keep their own settings).
let strict: [SwiftSetting] = [.unsafeFlags(["-warnings-as-errors"])]

/// The installed executables link with lld and packed relative relocations (DT_RELR, glibc >= 2.36): a static
/// Swift binary is a PIE with ~130,000 relative relocations; as RELA they are 3 MB of the file that ld.so reads at
/// every start, as RELR 25 KB (issue 8, docs/performance.md). --no-export-dynamic: the executable's ~40,000
/// symbols stay out of its dynamic symbol table (2 MB that ld.so's symbol lookups touched at start); nothing
/// loads a plugin that would need them. PIE and RELRO stay. Link commands only: changing these flags relinks,
/// it does not recompile.
let lean: [LinkerSetting] = [
    .unsafeFlags(
        ["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs", "-Xlinker", "--no-export-dynamic"],
        .when(platforms: [.linux]))
]

let package = Package(
    name: "cellprov",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "cellprov", targets: ["cellprov"]),
        .executable(name: "cellprovd", targets: ["cellprovd"]),
        .executable(name: "cellprov-registry", targets: ["cellprov-registry"]),
        .library(name: "CellprovCore", targets: ["CellprovCore"]),
        .library(name: "CellprovSimulator", targets: ["CellprovSimulator"]),
        // Fuzz targets (scripts/fuzz.sh, docs/robustness.md): libFuzzer targets when built with -DCELLPROV_FUZZ and
        // -sanitize=fuzzer; plain `swift build` makes them replayers of saved inputs.
        .executable(name: "cellprov-fuzz-at", targets: ["cellprov-fuzz-at"]),
        .executable(name: "cellprov-fuzz-parsers", targets: ["cellprov-fuzz-parsers"]),
        .executable(name: "cellprov-fuzz-identity", targets: ["cellprov-fuzz-identity"]),
        .executable(name: "cellprov-fuzz-config", targets: ["cellprov-fuzz-config"]),
        .executable(name: "cellprov-fuzz-ports", targets: ["cellprov-fuzz-ports"]),
        .executable(name: "cellprov-fuzz-scrub", targets: ["cellprov-fuzz-scrub"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // NIOHTTPTypes: the registry's request-body deadline handler sees Hummingbird's HTTP parts.
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        // cellprov-registry (issue 9) only: HTTP server, pages, PostgreSQL, metrics.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
    ],
    targets: [
        // Pure core: identity types, validation, redaction, AT framing and parsing. No I/O.
        .target(
            name: "CellprovCore",
            dependencies: [.product(name: "Crypto", package: "swift-crypto"), .product(name: "NIOConcurrencyHelpers", package: "swift-nio")],
            swiftSettings: strict),
        // Edge: the serial port (termios, exclusive open, async reads).
        .target(name: "CellprovSerial", dependencies: [.product(name: "NIOConcurrencyHelpers", package: "swift-nio")], swiftSettings: strict),
        // The AT engine over a transport, and the identity reader built on it.
        .target(
            name: "CellprovModem",
            dependencies: [
                "CellprovCore",
                "CellprovSerial",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ], swiftSettings: strict),
        // Test kit shipped with the product: the modem simulator (PTY), used by tests, bench and demo.
        .target(name: "CellprovSimulator", dependencies: ["CellprovCore", .product(name: "NIOConcurrencyHelpers", package: "swift-nio")], swiftSettings: strict),
        // The CLI's commands; the `cellprov` executable runs them.
        .target(
            name: "CellprovCLI",
            dependencies: [
                "CellprovCore", "CellprovModem", "CellprovSerial", "CellprovSimulator", "CellprovUdev", "CellprovStore",
                "CellprovSystemd",
                // `probe --report`: the factory record (wire type) and its poster (the reporter's transport rules).
                "CellprovEnrollmentAPI", "CellprovReporter",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ], swiftSettings: strict),
        // The installed program: one multi-call executable, `cellprov`, and `cellprovd` when run by that name
        // (`make install` adds the cellprovd link): one copy of the runtime and libraries instead of two.
        .executableTarget(
            name: "cellprov",
            dependencies: [
                "CellprovCLI", "CellprovDaemonCommand", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ], swiftSettings: strict, linkerSettings: lean),
        // Thin C shims: the only places libudev and libsystemd are imported.
        .systemLibrary(name: "CUdev", pkgConfig: "libudev", providers: [.apt(["libudev-dev"])]),
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        // The Swift concurrency runtime's global-executor hooks (a header only): cellprovd's own executor.
        .systemLibrary(name: "CSwiftConcurrencyHooks"),
        // Edge: udev enumeration and monitoring of tty devices.
        .target(name: "CellprovUdev", dependencies: ["CUdev", "CellprovCore", .product(name: "NIOConcurrencyHelpers", package: "swift-nio")], swiftSettings: strict),
        // Edge: sd_notify, watchdog, the journald log handler (libsystemd through CSystemd).
        .target(
            name: "CellprovSystemd",
            dependencies: ["CSystemd", "CellprovCore", .product(name: "Logging", package: "swift-log"), .product(name: "NIOConcurrencyHelpers", package: "swift-nio")],
            swiftSettings: strict),
        // Edge: the ModemManager client, read-only, over ModemManager's D-Bus API (sd-bus, through the same
        // CSystemd shim: one C library, one shim, two edges using it).
        .target(
            name: "CellprovModemManager",
            dependencies: ["CSystemd", "CellprovCore", .product(name: "Logging", package: "swift-log"), .product(name: "NIOConcurrencyHelpers", package: "swift-nio")],
            swiftSettings: strict),
        // Edge: the state directory's SQLite database (slot records, event history, outbox), through CSQLite (not
        // GRDB, which needs Foundation and so ICU's 33 MB in the installed program: docs/decisions.md).
        .target(
            name: "CellprovStore",
            dependencies: ["CellprovCore", "CSQLite", .product(name: "NIOConcurrencyHelpers", package: "swift-nio")],
            swiftSettings: strict),
        // The daemon's TOML parser: toml++ (Debian's libtomlplusplus-dev, header-only) behind a small C interface,
        // instead of TOMLKit, whose Swift layer imports Foundation (docs/decisions.md). The registry keeps TOMLKit.
        .target(
            name: "CTOMLShim",
            cxxSettings: [.define("TOML_EXCEPTIONS", to: "1"), .define("TOML_HEADER_ONLY", to: "1")]),
        // Thin C shim: the only place the state store imports the system's libsqlite3.
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        // Edge: delivery of outbox events to the fleet backend over HTTPS (async-http-client).
        .target(
            name: "CellprovReporter",
            dependencies: [
                "CellprovCore", "CellprovEnrollmentAPI",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ], swiftSettings: strict),
        // Test kit: a real HTTP(S) enrollment receiver on loopback (swift-nio), for tests, bench and demo.
        .target(
            name: "CellprovTestKit",
            dependencies: [
                "CellprovCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ], swiftSettings: strict),
        // The daemon's parts: configuration, discovery pipeline, slot sessions, the service.
        .target(
            name: "CellprovDaemon",
            dependencies: [
                "CellprovCore", "CellprovModem", "CellprovSerial", "CellprovUdev", "CellprovSystemd",
                "CellprovModemManager", "CellprovStore", "CellprovReporter", "CSwiftConcurrencyHooks", "CTOMLShim",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ], swiftSettings: strict),
        // cellprovd's command: argument parsing and wiring.
        .target(
            name: "CellprovDaemonCommand",
            dependencies: [
                "CellprovCore", "CellprovDaemon", "CellprovSystemd", "CellprovStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ], swiftSettings: strict),
        // The daemon alone, for development builds and tests (.build/debug/cellprovd); not installed.
        .executableTarget(
            name: "cellprovd",
            dependencies: ["CellprovDaemonCommand", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict, linkerSettings: lean),
        // Test kit: `cellprov-receiver`, the loopback enrollment endpoint of the demo.
        .executableTarget(
            name: "cellprov-receiver",
            dependencies: [
                "CellprovCore", "CellprovTestKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ], swiftSettings: strict),
        // `make bench`: store + outbox + delivery throughput and latency (release build).
        .executableTarget(
            name: "cellprov-bench",
            dependencies: [
                "CellprovCore", "CellprovStore", "CellprovReporter", "CellprovTestKit",
                .product(name: "Logging", package: "swift-log"),
            ], swiftSettings: strict),
        // `cellprov-registry-bench`: the registry storage's lookup latency at 1,000,000 units and ingest rate at 1/16/64
        // concurrent tasks, the incident questions, and the overview (read by the store, answered by the HTTP layer
        // on loopback), on SQLite and PostgreSQL (release build).
        .executableTarget(
            name: "cellprov-registry-bench",
            dependencies: [
                "CellprovCore", "CellprovEnrollmentAPI", "CellprovRegistryCore", "CellprovRegistryStore",
                "CellprovRegistryHTTP",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ], swiftSettings: strict),
        // The enrollment API's wire types (docs/enrollment-api.yaml): what cellprovd and `cellprov probe --report`
        // send and what cellprov-registry decodes. Pure; shared by both sides, so the two cannot drift apart.
        .target(name: "CellprovEnrollmentAPI", dependencies: ["CellprovCore"], swiftSettings: strict),
        // cellprov-registry (docs/registry.md). Its pure domain: units, flags and the rules that raise them,
        // masking, token hashing, carrier reconciliation, and the storage protocol the backends implement.
        .target(
            name: "CellprovRegistryCore",
            dependencies: [
                "CellprovCore", "CellprovEnrollmentAPI",
                .product(name: "Crypto", package: "swift-crypto"),
            ], swiftSettings: strict),
        // The registry's storage: SQLite (GRDB) and PostgreSQL (postgres-nio) behind CellprovRegistryCore's protocol.
        .target(
            name: "CellprovRegistryStore",
            dependencies: [
                "CellprovRegistryCore", "CellprovEnrollmentAPI",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ], swiftSettings: strict),
        // The registry's HTTP layer (Hummingbird): device API, operator API, pages, metrics. Talks to storage only
        // through the protocol.
        .target(
            name: "CellprovRegistryHTTP",
            dependencies: [
                "CellprovCore", "CellprovEnrollmentAPI", "CellprovRegistryCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ], swiftSettings: strict),
        // The registry's outbound alerts: critical flags POSTed to a webhook, retried with backoff.
        .target(
            name: "CellprovRegistryAlerts",
            dependencies: [
                "CellprovCore", "CellprovRegistryCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ], swiftSettings: strict),
        // `cellprov-registry`: serve, device add, operator add (thin: parses arguments and wires the parts).
        .executableTarget(
            name: "cellprov-registry",
            dependencies: [
                "CellprovCore", "CellprovRegistryCore", "CellprovRegistryStore", "CellprovRegistryHTTP",
                "CellprovRegistryAlerts", "CellprovSystemd",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ], swiftSettings: strict, linkerSettings: lean),
        // Fuzzing: the shared driver, and one thin executable per fuzz target, each calling production code.
        .target(name: "CellprovFuzzSupport", swiftSettings: strict),
        .executableTarget(name: "cellprov-fuzz-at", dependencies: ["CellprovCore", "CellprovFuzzSupport"], swiftSettings: strict),
        .executableTarget(
            name: "cellprov-fuzz-parsers", dependencies: ["CellprovCore", "CellprovFuzzSupport"], swiftSettings: strict),
        .executableTarget(
            name: "cellprov-fuzz-identity",
            dependencies: [
                "CellprovCore", "CellprovModem", "CellprovSerial", "CellprovFuzzSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ], swiftSettings: strict),
        .executableTarget(
            name: "cellprov-fuzz-config", dependencies: ["CellprovDaemon", "CellprovFuzzSupport"], swiftSettings: strict),
        .executableTarget(
            name: "cellprov-fuzz-ports", dependencies: ["CellprovCore", "CellprovFuzzSupport"], swiftSettings: strict),
        .executableTarget(
            name: "cellprov-fuzz-scrub", dependencies: ["CellprovCore", "CellprovReporter", "CellprovFuzzSupport"],
            swiftSettings: strict),
        // What only the test suites share (not the demo's receiver): damaging a state database, capturing logs.
        .target(
            name: "CellprovTestSupport",
            dependencies: [
                "CellprovStore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ], path: "Tests/CellprovTestSupport", swiftSettings: strict),
        .testTarget(name: "CellprovCoreTests", dependencies: ["CellprovCore"], resources: [.copy("Fixtures")], swiftSettings: strict),
        .testTarget(
            name: "CellprovModemTests", dependencies: ["CellprovModem", "CellprovSimulator", "CellprovSerial", .product(name: "NIOConcurrencyHelpers", package: "swift-nio")],
            swiftSettings: strict),
        .testTarget(
            name: "CellprovRegistryTests",
            dependencies: [
                "CellprovCore", "CellprovEnrollmentAPI", "CellprovRegistryCore", "CellprovRegistryStore",
                "CellprovRegistryHTTP", "CellprovRegistryAlerts", "CellprovTestKit", "CellprovTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                // The overview chart template rendered alone (its escaping).
                .product(name: "Mustache", package: "swift-mustache"),
                // The connection deadlines' handler on an embedded channel (virtual time).
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                // The storage suite checks the schema's own guards (append-only audit) with raw SQL.
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ], swiftSettings: strict),
        .testTarget(
            name: "CellprovCLITests",
            dependencies: ["CellprovCore", "CellprovSimulator", "CellprovEnrollmentAPI", "CellprovTestKit"],
            swiftSettings: strict),
        .testTarget(
            name: "CellprovDaemonTests",
            dependencies: [
                "CellprovDaemon", "CellprovSystemd", "CellprovModemManager", "CellprovUdev", "CellprovCore",
                "CellprovSimulator", "CellprovStore", "CellprovReporter", "CellprovTestKit", "CellprovEnrollmentAPI",
                "CellprovTestSupport",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ], swiftSettings: strict),
        // The state store: commits, outbox, views, salvage, a restored database.
        .testTarget(
            name: "CellprovStoreTests",
            dependencies: [
                "CellprovCore", "CellprovEnrollmentAPI", "CellprovStore", "CellprovTestKit", "CellprovTestSupport",
                // A real SQLite file written with another library (GRDB), to check that the salvage reads it.
                .product(name: "GRDB", package: "GRDB.swift"),
            ], swiftSettings: strict),
        // The reporter and the other senders of the outbox: payload, delivery, TLS, refusals, hawkBit, faults.
        .testTarget(
            name: "CellprovReporterTests",
            dependencies: [
                "CellprovCore", "CellprovReporter", "CellprovStore", "CellprovTestKit", "CellprovTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ], swiftSettings: strict),
    ]
)
