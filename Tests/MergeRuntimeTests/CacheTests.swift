import Foundation
import MergeModel
import Testing
import _TestSupport

@testable import MergeCompiler
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
    let (dir, recipe, cacheDir) = try copiedModels(fineTunes: ["ft0"])
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

  /// A workspace of copied models with a TIES recipe over them (density 0.3 for the first
  /// fine-tune, 0.6 for the second), and its cache folder.
  func copiedModels(fineTunes: [String] = ["ft0", "ft1"]) throws -> (
    TemporaryDirectory, recipe: String, cache: String
  ) {
    let dir = TemporaryDirectory()
    for m in ["base"] + fineTunes {
      try FileManager.default.createDirectory(
        atPath: dir.path + "/" + m, withIntermediateDirectories: true)
      for f in ["config.json", "model.safetensors"] {
        try FileManager.default.copyItem(
          atPath: Repository.tinyLlama + "/\(m)/\(f)", toPath: dir.path + "/\(m)/\(f)")
      }
    }
    var text = "merge_method: ties\nbase_model: base\nmodels:\n"
    for (i, m) in fineTunes.enumerated() {
      text += "  - {model: \(m), parameters: {weight: 1, density: \(["0.3", "0.6"][i])}}\n"
    }
    let recipe = dir.write("r.yml", text)
    return (dir, recipe, dir.path + "/cache")
  }

  @Test("an entry is not trusted for its name: copied over others, short or forged, it is a miss")
  func entriesCarryTheirIdentity() throws {
    let (dir, recipe, cacheDir) = try copiedModels()
    try run(recipe, dir.path + "/cold", cache: ReductionCache(directory: cacheDir))
    let names = try FileManager.default.contentsOfDirectory(atPath: cacheDir)
    #expect(names.count == 78)
    // One sound entry copied over every other: only its own key still finds it.
    let original = try Data(contentsOf: URL(fileURLWithPath: cacheDir + "/" + names[0]))
    for name in names.dropFirst() {
      try original.write(to: URL(fileURLWithPath: cacheDir + "/" + name))
    }
    let copied = ReductionCache(directory: cacheDir)
    try run(recipe, dir.path + "/copied", cache: copied)
    #expect(copied.statistics.hits == 1)
    #expect(try folderBytes(dir.path + "/cold") == (try folderBytes(dir.path + "/copied")))
    // An entry with a well-formed but short tie set (0 words): a miss, not a read past its end.
    let short = CachedReduction.cut(
      Cut(kind: .thresholdWithTies(0x3c00, descending: true, ties: Bitset(words: []))))
    for name in names {
      try Data(short.bytes(key: name, elements: 4096)).write(
        to: URL(fileURLWithPath: cacheDir + "/" + name))
    }
    let shortCache = ReductionCache(directory: cacheDir)
    try run(recipe, dir.path + "/short", cache: shortCache)
    #expect(shortCache.statistics.hits == 0)
    #expect(try folderBytes(dir.path + "/cold") == (try folderBytes(dir.path + "/short")))
  }

  @Test("an input rewritten in place with its size and modification time restored is a miss")
  func rewrittenInPlace() throws {
    let (dir, recipe, cacheDir) = try copiedModels()
    try run(recipe, dir.path + "/before", cache: ReductionCache(directory: cacheDir))
    // Rewrite ft0's data: another fine-tune of the same shape, same size, same mtime.
    let file = dir.path + "/ft0/model.safetensors"
    let attributes = try FileManager.default.attributesOfItem(atPath: file)
    let other = try Data(
      contentsOf: URL(fileURLWithPath: Repository.tinyLlama + "/ft2/model.safetensors"))
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
    try handle.write(contentsOf: other)
    try handle.close()
    try FileManager.default.setAttributes(
      [.modificationDate: attributes[.modificationDate] as Any], ofItemAtPath: file)
    let after = ReductionCache(directory: cacheDir)
    try run(recipe, dir.path + "/after", cache: after)
    #expect(after.statistics.hits == 39)  // ft1's selections only
    try run(recipe, dir.path + "/fresh", cache: ReductionCache(directory: nil))
    #expect(try folderBytes(dir.path + "/after") == (try folderBytes(dir.path + "/fresh")))
  }
}

/// Cache keys are part of users' cache folders: they must not change when printed graphs do.
@Suite struct CacheKeyTests {
  /// Every operation's identity, version 1, as keys have been built since the cache exists.
  static let identities: [(Op, String)] = [
    (.load(input: 2), "load #2"),
    (.taskVector, "task_vector"),
    (.add, "add"),
    (.scale(0.5), "scale 0.5"),
    (.divide(3), "divide 3.0"),
    (.keepTop, "keep_top"),
    (.keepBand, "keep_band"),
    (.keepRandom(density: 0.25, stream: 0xabc), "keep_random density=0.25 stream=abc"),
    (
      .keepByRank(density: 0.5, epsilon: 0.1, stream: 0xff, columns: 64),
      "keep_by_rank density=0.5 epsilon=0.1 columns=64 stream=ff"
    ),
    (.rescaleL1, "rescale_l1"),
    (
      .signConsensus(weights: [1, 0.5], normalize: true),
      "sign_consensus weights=[1.0, 0.5] normalize=true"
    ),
    (.weightedSum(weights: [2]), "weighted_sum weights=[2.0]"),
    (.sum, "sum"),
    (
      .fusedTaskSum(weights: [1], divisor: 2, lambda: nil),
      "fused_task_sum weights=[1.0] divisor=2.0"
    ),
    (
      .fusedConsensus(weights: [1], scales: [nil], normalize: false, lambda: 0.5),
      "fused_consensus weights=[1.0] scales=[-] normalize=false lambda=0.5"
    ),
    (.sortPrefix(rank: 32, descending: true), "sort_prefix rank=32 descending"),
    (.l1Norm, "l1_norm"),
    (.sumOfSquares, "sum_of_squares"),
    (.normalizedDot, "normalized_dot"),
    (.slerpBlend(t: 0.25), "slerp_blend t=0.25"),
    (.store(.bfloat16), "store BF16"),
    (.copyBytes, "copy_bytes"),
  ]

  @Test("each operation's cache identity is pinned, whatever its printed name")
  func identities() {
    for (op, identity) in Self.identities {
      #expect(op.identity == identity)
    }
    // The printed name is free to differ: a whole-tensor kernel prints its description but is
    // identified by its type and every field.
    let kernel = Op.kernel(NearSwap.Kernel(t: 0.5), method: NearSwap.spec)
    #expect(kernel.name == "nearswap t=0.5")
    #expect(kernel.identity == "whole_tensor MergeCompiler.NearSwap.Kernel(t: 0.5)")
  }

  @Test("the keys of TIES selections are pinned: printed graphs may change, keys may not")
  func pinnedKey() throws {
    var options = CompileOptions()
    options.onlyTensor = "model.norm.weight"
    let compilation = Compiler.compile(
      path: Repository.parity + "/recipes/ties.yml", options: options)
    let graph = try #require(compilation.graphs.first)
    let selections = graph.nodes.indices.filter { graph.nodes[$0].op.kind == .selection }
    let keys = selections.map {
      ReductionCache.key(NodeID(index: $0), graph: graph) { "model\($0.model)" }
    }
    #expect(
      keys == [
        // Numerics version 2 (ReductionCache.numericsVersion).
        "bcc77408acc5d0e6081f051a61cd9fb9", "7df77c83c75f8ca9624f5ba997303332",
        "a82229e335b59ff7c541db0d7094cb13",
      ])
  }
}

extension CacheTests {
  @Test("reading an entry marks it used, so eviction keeps it longer")
  func touchOnRead() throws {
    let dir = TemporaryDirectory()
    let cache = ReductionCache(directory: dir.path)
    let key = String(repeating: "ab", count: 16)
    cache.store(key, .scalar(42), elements: 10)
    let path = dir.path + "/" + key
    try FileManager.default.setAttributes(
      [.modificationDate: Date(timeIntervalSince1970: 1000)], ofItemAtPath: path)
    #expect(cache.entries().first?.used == 1000)
    let fresh = ReductionCache(directory: dir.path)
    #expect(fresh.lookup(key, elements: 10) != nil)
    let used = try #require(fresh.entries().first?.used)
    #expect(used > 1_700_000_000)
  }
}
