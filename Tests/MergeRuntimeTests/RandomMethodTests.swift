import Foundation
import MergeCompiler
import MergeModel
import Testing
import _TestSupport

@testable import MergeRuntime

/// DARE and DELLA draw random masks: their outputs are compared by statistics, and by bytes
/// against themselves.
@Suite struct RandomMethodTests {
  struct Case: Sendable, CustomTestStringConvertible {
    var method: String
    var density: Double
    var epsilon: Double?
    var testDescription: String { method }
  }

  static let cases = [
    Case(method: "dare_linear", density: 0.5, epsilon: nil),
    Case(method: "dare_ties", density: 0.7, epsilon: nil),
    Case(method: "della", density: 0.5, epsilon: 0.1),
    Case(method: "della_linear", density: 0.6, epsilon: 0.15),
  ]

  /// Merges ft0 alone (weight 1), so that `output − base` is its sparsified, rescaled task
  /// vector, and checks the statistics issue 4 names per tensor with ≥ 10,000 nonzero entries:
  /// the kept fraction (the density for DARE; the mean keep probability by rank for DELLA)
  /// and the preserved L1 norm.
  @Test("kept fraction matches the density and the L1 norm is preserved", arguments: cases)
  func statistics(_ c: Case) throws {
    let workspace = ModelWorkspace()
    var parameters = "{weight: 1.0, density: \(c.density)"
    if let e = c.epsilon { parameters += ", epsilon: \(e)" }
    parameters += "}"
    let recipe = workspace.recipe(
      """
      merge_method: \(c.method)
      base_model: models/base
      models:
        - model: models/ft0
          parameters: \(parameters)
      dtype: float32
      out_dtype: float32
      """)
    try runRecipe(recipe, output: workspace.path("out"), seed: 42)
    let out = try loadTensors(workspace.path("out"))
    let base = try loadTensors(Repository.tinyLlama + "/base")
    let ft = try loadTensors(Repository.tinyLlama + "/ft0")
    var checked = 0
    for (name, b) in base {
      let tau = zip(ft[name]?.values ?? [], b.values).map { $0 - $1 }
      let nonzero = tau.filter { $0 != 0 }.count
      guard nonzero >= 10_000, let o = out[name] else { continue }
      let kept = zip(o.values, b.values).map { $0 - $1 }
      let keptCount = zip(kept, tau).filter { $0.1 != 0 && $0.0 != 0 }.count
      let fraction = Double(keptCount) / Double(nonzero)
      var expected = c.density
      if let e = c.epsilon {
        // DELLA: mean keep probability over the nonzero entries, ranks per row, zeros included.
        let columns = b.shape.count >= 2 ? b.shape[1] : b.shape[0]
        var total = 0.0
        for row in 0..<(tau.count / columns) {
          let slice = Array(tau[(row * columns)..<((row + 1) * columns)])
          let order = slice.indices.sorted { (abs(slice[$0]), $0) < (abs(slice[$1]), $1) }
          for (rank, index) in order.enumerated() where slice[index] != 0 {
            total += (c.density - e) + 2 * e * Double(rank) / Double(columns - 1)
          }
        }
        expected = total / Double(nonzero)
      }
      let sigma = (expected * (1 - expected) / Double(nonzero)).squareRoot()
      #expect(
        abs(fraction - expected) < 5 * sigma + 1e-3,
        "\(name): kept \(fraction), expected \(expected)")
      let l1Before = tau.reduce(0.0) { $0 + Double(abs($1)) }
      let l1After = kept.reduce(0.0) { $0 + Double(abs($1)) }
      #expect(abs(l1After / l1Before - 1) < 1e-3, "\(name): L1 ratio \(l1After / l1Before)")
      checked += 1
    }
    // The tiny model's embedding and output head have that many.
    #expect(checked == 2)
  }

  @Test("the same seed gives the same bytes; another seed gives other bytes")
  func seeds() throws {
    let recipe = Repository.parity + "/recipes/dare_ties.yml"
    let dir = TemporaryDirectory()
    try runRecipe(recipe, output: dir.path + "/a", threads: 1, seed: 7)
    try runRecipe(recipe, output: dir.path + "/b", threads: 2, seed: 7)
    try runRecipe(recipe, output: dir.path + "/c", threads: 2, seed: 8)
    let a = try folderBytes(dir.path + "/a")
    #expect(a == (try folderBytes(dir.path + "/b")))
    #expect(a["model.safetensors"] != (try folderBytes(dir.path + "/c"))["model.safetensors"])
  }
}

@Suite struct DeterminismTests {
  @Test(
    "output files are bit-identical across runs and thread counts",
    arguments: [
      "ties", "breadcrumbs_ties", "dare_ties", "della", "linear_gradient", "passthrough_slices",
      "slerp", "nuslerp", "multislerp", "karcher", "model_stock", "nearswap", "sce", "arcee_fusion",
      "ram", "ramplus_tl",
    ])
  func identical(_ name: String) throws {
    let recipe = Repository.parity + "/recipes/\(name).yml"
    let dir = TemporaryDirectory()
    try runRecipe(recipe, output: dir.path + "/one", threads: 1)
    try runRecipe(recipe, output: dir.path + "/two", threads: 2)
    try runRecipe(recipe, output: dir.path + "/again", threads: 2)
    let one = try folderBytes(dir.path + "/one")
    #expect(
      one.keys.sorted() == [
        "README.md", "config.json", "generation_config.json", "mergekit_config.yml",
        "model.safetensors", "tokenizer.json", "tokenizer_config.json",
      ])
    #expect(one == (try folderBytes(dir.path + "/two")))
    #expect(one == (try folderBytes(dir.path + "/again")))
  }

  @Test(
    "tokenizer sections and LoRA sources are bit-identical across runs and thread counts too",
    arguments: [
      "tok-recipes/tok_tokens_block", "tok-recipes/tok_union_ties",
      "lora-recipes/lora_task_arithmetic",
    ])
  func identicalWithVocabularyAndAdapters(_ name: String) throws {
    let recipe = Repository.parity + "/\(name).yml"
    let dir = TemporaryDirectory()
    try runRecipe(recipe, output: dir.path + "/one", threads: 1)
    try runRecipe(recipe, output: dir.path + "/two", threads: 2)
    let one = try folderBytes(dir.path + "/one")
    #expect(one.keys.contains("model.safetensors") && one.keys.contains("tokenizer.json"))
    #expect(one == (try folderBytes(dir.path + "/two")))
  }

  @Test("sharded output is identical to the single file, tensor for tensor")
  func sharded() throws {
    let recipe = Repository.parity + "/recipes/ties.yml"
    let dir = TemporaryDirectory()
    try runRecipe(recipe, output: dir.path + "/single")
    try runRecipe(recipe, output: dir.path + "/sharded", shardSize: 200_000)
    let files = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/sharded").filter {
      $0.hasSuffix(".safetensors")
    }
    #expect(files.count == 7)
    let single = try loadTensors(dir.path + "/single")
    let sharded = try loadTensors(dir.path + "/sharded")
    #expect(single.keys.sorted() == sharded.keys.sorted())
    for (k, v) in single { #expect(v.values == sharded[k]?.values, "\(k)") }
  }
}
