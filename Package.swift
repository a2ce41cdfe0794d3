// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "cellprov",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "cellprov", targets: ["cellprov"]),
        .executable(name: "cellprovd", targets: ["cellprovd"]),
        .library(name: "CellprovCore", targets: ["CellprovCore"]),
        .library(name: "CellprovSimulator", targets: ["CellprovSimulator"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // Pure core: identity types, validation, redaction, AT framing and parsing. No I/O.
        .target(
            name: "CellprovCore",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        // Edge: the serial port (termios, exclusive open, async reads).
        .target(name: "CellprovSerial"),
        // The AT engine over a transport, and the identity reader built on it.
        .target(
            name: "CellprovModem",
            dependencies: [
                "CellprovCore",
                "CellprovSerial",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Test kit shipped with the product: the modem simulator (PTY), used by tests, bench and demo.
        .target(name: "CellprovSimulator", dependencies: ["CellprovCore"]),
        .executableTarget(
            name: "cellprov",
            dependencies: [
                "CellprovCore", "CellprovModem", "CellprovSimulator",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "cellprovd",
            dependencies: [
                "CellprovCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "CellprovCoreTests", dependencies: ["CellprovCore"], resources: [.copy("Fixtures")]),
        .testTarget(name: "CellprovModemTests", dependencies: ["CellprovModem", "CellprovSimulator", "CellprovSerial"]),
        .testTarget(name: "CellprovCLITests", dependencies: ["CellprovCore", "CellprovSimulator"]),
    ]
)
