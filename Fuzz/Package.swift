// swift-tools-version:5.3
// A libFuzzer target for the expression language and template parser (see scripts/fuzz.sh).
// It compiles FlowStackCore's sources (through the Sources/FlowStackCore link) with the sanitizers.
import PackageDescription

let package = Package(
    name: "FlowStackFuzz",
    targets: [
        .systemLibrary(name: "CSystemRandom", path: "Sources/CSystemRandom"),
        .target(name: "FlowStackCore", dependencies: ["CSystemRandom"], path: "Sources/FlowStackCore",
                resources: [.copy("Resources/common-passwords.txt")]),
        .target(name: "ExpressionFuzz", dependencies: ["FlowStackCore"]),
    ]
)
