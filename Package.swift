// swift-tools-version: 6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny")
]

let package = Package(
    name: "flowstack",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "flowstack", targets: ["flowstack"]),
        .executable(name: "flowstack-sandbox", targets: ["flowstack-sandbox"]),
        .library(name: "FlowStackServer", targets: ["FlowStackServer", "FlowStackOperations"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/vapor/sql-kit", from: "3.36.0"),
        .package(url: "https://github.com/vapor/postgres-kit", from: "2.17.0"),
        // Already built for postgres-kit; named for LISTEN/NOTIFY and the pool Store uses directly.
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // Already built for Hummingbird; named for the HTTP part types a connection guard sees.
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CSystemRandom",
            path: "Sources/CSystemRandom"
        ),
        .systemLibrary(
            name: "CArgon2",
            path: "Sources/CArgon2",
            pkgConfig: "libargon2",
            providers: [.apt(["libargon2-dev"])]
        ),
        .systemLibrary(
            name: "CSQLite",
            path: "Sources/CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .systemLibrary(
            name: "CJavaScriptCore",
            path: "Sources/CJavaScriptCore",
            pkgConfig: "javascriptcoregtk-4.1",
            providers: [.apt(["libjavascriptcoregtk-4.1-dev"])]
        ),
        .executableTarget(
            name: "flowstack-sandbox",
            dependencies: ["CJavaScriptCore"],
            swiftSettings: swiftSettings
        ),
        .systemLibrary(
            name: "CSpawn",
            path: "Sources/CSpawn"
        ),
        .target(
            name: "FlowStackSandbox",
            dependencies: ["FlowStackCore", "FlowStackRuntime", "CSpawn", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FlowStackCore",
            dependencies: ["CSystemRandom"],
            resources: [.copy("Resources/common-passwords.txt")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FlowStackCrypto",
            dependencies: [
                "FlowStackCore",
                "CArgon2",
                "CSystemRandom",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FlowStackStore",
            dependencies: [
                "FlowStackCore",
                "FlowStackCrypto",
                .product(name: "SQLKit", package: "sql-kit"),
                "CSQLite",
                .product(name: "PostgresKit", package: "postgres-kit"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FlowStackNetwork",
            dependencies: [
                "FlowStackCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FlowStackRuntime",
            dependencies: [
                "FlowStackCore",
                "FlowStackNetwork",
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FlowStackNodes",
            dependencies: [
                "FlowStackRuntime",
                "FlowStackCore",
                "FlowStackNetwork",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FlowStackEngine",
            dependencies: [
                "FlowStackCore",
                "FlowStackNetwork",
                "FlowStackNodes",
                "FlowStackRuntime",
                "FlowStackStore",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FlowStackApp",
            dependencies: [
                "FlowStackNetwork",
                "FlowStackCore",
                "FlowStackCrypto",
                "FlowStackStore",
                "FlowStackEngine",
                "FlowStackNodes",
                "FlowStackRuntime",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FlowStackOperations",
            dependencies: [
                "FlowStackApp",
                "FlowStackCore",
                "FlowStackCrypto",
                "FlowStackStore",
                "FlowStackEngine",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FlowStackServer",
            dependencies: [
                "FlowStackOperations",
                "FlowStackNetwork",
                "FlowStackApp",
                "FlowStackCore",
                "FlowStackCrypto",
                "FlowStackStore",
                "FlowStackEngine",
                "FlowStackNodes",
                "FlowStackRuntime",
                "FlowStackSandbox",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "flowstack",
            dependencies: [
                "FlowStackOperations",
                "FlowStackNetwork",
                "FlowStackServer",
                "FlowStackApp",
                "FlowStackCore",
                "FlowStackCrypto",
                "FlowStackStore",
                "FlowStackNodes",
                "FlowStackRuntime",
                "FlowStackEngine",
                "FlowStackSandbox",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FlowStackTesting",
            dependencies: [
                "FlowStackOperations",
                "FlowStackNetwork",
                "FlowStackServer",
                "FlowStackCore",
                "FlowStackCrypto",
                "FlowStackStore",
                "FlowStackEngine",
                "FlowStackNodes",
                "FlowStackRuntime",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FlowStackCoreTests",
            dependencies: ["FlowStackCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FlowStackCryptoTests",
            dependencies: ["FlowStackCrypto", "FlowStackCore", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FlowStackNodesTests",
            dependencies: ["FlowStackNodes", "FlowStackRuntime", "FlowStackNetwork", "FlowStackCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FlowStackNetworkTests",
            dependencies: [
                "FlowStackNetwork", "FlowStackCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"), .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FlowStackStoreTests",
            dependencies: [
                "FlowStackStore", "FlowStackTesting", "FlowStackCore", "FlowStackCrypto", .product(name: "SQLKit", package: "sql-kit"),
                .product(name: "Logging", package: "swift-log"), .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FlowStackAppTests",
            dependencies: ["FlowStackApp"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FlowStackSandboxTests",
            dependencies: ["FlowStackSandbox", "FlowStackRuntime", "FlowStackCore", "FlowStackTesting"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FlowStackOperationsTests",
            dependencies: [
                "FlowStackOperations", "FlowStackServer", "FlowStackCore", "FlowStackCrypto",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FlowStackServerTests",
            dependencies: [
                "FlowStackServer", "FlowStackOperations", "FlowStackApp", "FlowStackNetwork", "FlowStackEngine", "FlowStackNodes",
                "FlowStackRuntime", "FlowStackStore", "FlowStackCore",
                "FlowStackCrypto", "FlowStackSandbox", "FlowStackTesting",
                .product(name: "Hummingbird", package: "hummingbird"), .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"), .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"), .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
