// swift-tools-version:5.9
// The Swift package of outpost: the generated bindings and the hand-written async layer over
// the OutpostFFI XCFramework (the Rust library for each Apple platform). bindings/package.sh
// lays it out; on macOS, `swift build` and `swift test` in that directory (see bindings/README.md).
import PackageDescription

let package = Package(
    name: "Outpost",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "Outpost", targets: ["Outpost"]),
    ],
    targets: [
        .binaryTarget(name: "OutpostFFI", path: "OutpostFFI.xcframework"),
        .target(
            name: "Outpost",
            dependencies: ["OutpostFFI"],
            path: "Sources/Outpost",
            linkerSettings: [.linkedFramework("SystemConfiguration")]
        ),
        .testTarget(name: "OutpostTests", dependencies: ["Outpost"], path: "Tests/OutpostTests"),
    ]
)
