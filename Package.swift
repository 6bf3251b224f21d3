// swift-tools-version:6.0
import PackageDescription

let package = Package(
  name: "merge",
  products: [
    .executable(name: "merge", targets: ["merge"]),
    .executable(name: "merge-bench", targets: ["merge-bench"]),
  ],
  targets: [
    .systemLibrary(
      name: "CYAML",
      pkgConfig: "yaml-0.1",
      providers: [.apt(["libyaml-dev"])]
    ),
    .systemLibrary(
      name: "CCrypto",
      pkgConfig: "libcrypto",
      providers: [.apt(["libssl-dev"])]
    ),
    // LAPACKE, opened on first use (its header from liblapacke-dev; see merge_lapack.h).
    .target(name: "CLapack", dependencies: ["CMergeSupport"]),
    // libcurl, opened on first use (its header from libcurl4-openssl-dev; see merge_http.h).
    .target(name: "CHTTP", dependencies: ["CMergeSupport"]),
    .target(name: "CMergeSupport"),
    .target(name: "MergeRecipe", dependencies: ["CYAML"]),
    .target(name: "MergeModel", dependencies: ["CMergeSupport", "CCrypto"]),
    .target(name: "MergeHub", dependencies: ["MergeModel", "CHTTP"]),
    .target(name: "MergeCompiler", dependencies: ["MergeRecipe", "MergeModel"]),
    .target(
      name: "MergeRuntime",
      dependencies: ["MergeCompiler", "MergeModel", "MergeRecipe", "CLapack", "CMergeSupport"]),
    .target(
      name: "MergeCLI",
      dependencies: ["MergeRuntime", "MergeCompiler", "MergeModel", "MergeRecipe", "MergeHub"]),
    .executableTarget(name: "merge", dependencies: ["MergeCLI"]),
    .target(
      name: "MergeBench",
      dependencies: ["MergeModel", "MergeRuntime", "MergeCompiler", "MergeRecipe"]),
    .executableTarget(name: "merge-bench", dependencies: ["MergeBench"]),
    .target(name: "MergeFuzz", dependencies: ["MergeCompiler", "MergeModel", "MergeRecipe"]),
    .executableTarget(name: "merge-fuzz", dependencies: ["MergeFuzz"]),
    .target(name: "_TestSupport", dependencies: ["MergeRecipe", "MergeModel"]),
    .testTarget(
      name: "MergeModelTests",
      dependencies: ["MergeModel", "MergeHub", "CHTTP", "_TestSupport"]),
    .testTarget(
      name: "MergeRuntimeTests",
      dependencies: ["MergeRuntime", "MergeCompiler", "MergeModel", "MergeRecipe", "_TestSupport"]),
    .testTarget(name: "MergeRecipeTests", dependencies: ["MergeRecipe", "_TestSupport"]),
    .testTarget(
      name: "MergeCompilerTests",
      dependencies: ["MergeCompiler", "MergeRecipe", "MergeFuzz", "_TestSupport"]),
    .testTarget(
      name: "MergeCLITests", dependencies: ["MergeCLI", "_TestSupport"], exclude: ["Snapshots"]),
  ]
)
