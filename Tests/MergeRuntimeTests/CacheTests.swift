import Foundation
import MergeCompiler
import MergeModel
import Testing
import _TestSupport

@testable import MergeRuntime

@Suite struct CacheTests {
  func run(_ recipe: String, _ out: String, cache: ReductionCache) throws {
    var options = RunOptions(threads: 2)
    options.cache = cache
    _ = try MergeRunner.run(try compileRecipe(recipe), output: out, options: options)
  }

  @Test("a warm cache gives the same bytes; new weights reuse it, new densities or inputs do not")
  func reuse() throws {
    let workspace = ModelWorkspace()
    let cacheDir = workspace.path("cache")
    func recipe(_ w: Double, _ d: Double, _ name: String) -> String {
      workspace.recipe(
        """
        merge_method: ties
        base_model: models/base
        models:
          - {model: models/ft0, parameters: {weight: \(w), density: \(d)}}
          - {model: models/ft1, parameters: {weight: 0.5, density: 0.7}}
        dtype: float32
        """, name: name)
    }
    let first = ReductionCache(directory: cacheDir)
    try run(recipe(1.0, 0.5, "a.yml"), workspace.path("a1"), cache: first)
    #expect(first.statistics.hits == 0)
    #expect(first.statistics.misses == 78)  // 39 tensors × 2 sort prefixes
    let second = ReductionCache(directory: cacheDir)
    try run(recipe(1.0, 0.5, "a.yml"), workspace.path("a2"), cache: second)
    #expect(second.statistics.hits == 78)
    #expect(try folderBytes(workspace.path("a1")) == (try folderBytes(workspace.path("a2"))))
    // Another weight: every selection is reused, and the result is what a cold run gives.
    let third = ReductionCache(directory: cacheDir)
    try run(recipe(0.3, 0.5, "b.yml"), workspace.path("b1"), cache: third)
    #expect(third.statistics.hits == 78)
    try run(recipe(0.3, 0.5, "b.yml"), workspace.path("b2"), cache: ReductionCache(directory: nil))
    #expect(try folderBytes(workspace.path("b1")) == (try folderBytes(workspace.path("b2"))))
    // Another density for ft0: its selections are new, ft1's are reused.
    let fourth = ReductionCache(directory: cacheDir)
    try run(recipe(1.0, 0.4, "c.yml"), workspace.path("c1"), cache: fourth)
    #expect(fourth.statistics.hits == 39)
    #expect(fourth.statistics.misses == 39)
  }

  @Test("a changed input file or a damaged entry is recomputed")
  func invalidation() throws {
    let dir = TemporaryDirectory()
    for m in ["base", "ft0"] {
      try FileManager.default.createDirectory(
        atPath: dir.path + "/" + m, withIntermediateDirectories: true)
      for f in ["config.json", "model.safetensors"] {
        try FileManager.default.copyItem(
          atPath: Repository.tinyLlama + "/\(m)/\(f)", toPath: dir.path + "/\(m)/\(f)")
      }
    }
    let recipe = dir.write(
      "r.yml",
      "merge_method: ties\nbase_model: base\nmodels:\n  - model: ft0\n    parameters: {weight: 1, density: 0.3}\n"
    )
    let cacheDir = dir.path + "/cache"
    try run(recipe, dir.path + "/o1", cache: ReductionCache(directory: cacheDir))
    // Touch the fine-tune: same bytes, new modification time.
    try FileManager.default.setAttributes(
      [.modificationDate: Date(timeIntervalSinceNow: 10)],
      ofItemAtPath: dir.path + "/ft0/model.safetensors")
    let touched = ReductionCache(directory: cacheDir)
    try run(recipe, dir.path + "/o2", cache: touched)
    #expect(touched.statistics.hits == 0)
    // Damage every entry: they are recomputed, and the output is unchanged.
    for name in try FileManager.default.contentsOfDirectory(atPath: cacheDir) {
      try Data([1, 2, 3]).write(to: URL(fileURLWithPath: cacheDir + "/" + name))
    }
    let damaged = ReductionCache(directory: cacheDir)
    try run(recipe, dir.path + "/o3", cache: damaged)
    #expect(damaged.statistics.hits == 0)
    #expect(try folderBytes(dir.path + "/o1") == (try folderBytes(dir.path + "/o3")))
  }
}
