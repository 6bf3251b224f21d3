// swift-tools-version:6.0
import PackageDescription

let package = Package(
  name: "merge",
  products: [
    .executable(name: "merge", targets: ["merge"])
  ],
  targets: [
    .systemLibrary(
      name: "CYAML",
      pkgConfig: "yaml-0.1",
      providers: [.apt(["libyaml-dev"])]
    ),
    .target(name: "MergeRecipe", dependencies: ["CYAML"]),
    .target(name: "MergeModel", dependencies: ["MergeRecipe"]),
    .target(name: "MergeCompiler", dependencies: ["MergeRecipe", "MergeModel"]),
    .target(name: "MergeCLI", dependencies: ["MergeCompiler", "MergeModel", "MergeRecipe"]),
    .executableTarget(name: "merge", dependencies: ["MergeCLI"]),
    .target(name: "_TestSupport", dependencies: ["MergeRecipe"]),
    .testTarget(name: "MergeRecipeTests", dependencies: ["MergeRecipe", "_TestSupport"]),
    .testTarget(
      name: "MergeCompilerTests", dependencies: ["MergeCompiler", "MergeRecipe", "_TestSupport"]),
    .testTarget(
      name: "MergeCLITests", dependencies: ["MergeCLI", "_TestSupport"]),
  ]
)
