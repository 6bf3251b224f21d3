import Foundation
import MergeModel
import Testing
import _TestSupport

@testable import MergeCompiler
@testable import MergeRuntime

/// Karcher means of nearly parallel models — fine-tunes whose layer norms barely moved — against
/// the converged mean computed in f64.
@Suite struct KarcherTests {
  static let tensor = "model.norm.weight"
  static let count = 200_000  // several blocks

  /// Models holding one f32 tensor: `base` near 1 (a layer norm), and each other a copy moved by
  /// `spread` per element, so that the cosines between them are about 1 − spread²/2.
  static func models(_ count: Int, spread: Float, seed: UInt64) throws -> (
    TemporaryDirectory, [[Float]]
  ) {
    let dir = TemporaryDirectory()
    var rng = SplitMix64(state: seed)
    func uniform() -> Float { Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1 }
    let base = (0..<Self.count).map { _ in 1 + 0.05 * uniform() }
    var all: [[Float]] = []
    for m in 0..<count {
      let values = base.map { $0 + spread * uniform() }
      all.append(values)
      let folder = try OutputFolder(destination: dir.path + "/m\(m)")
      let spec = TensorSpec(name: Self.tensor, dtype: .float32, shape: [Self.count])
      let writer = try SafetensorsWriter(
        folder: folder, layout: ShardLayout(tensors: [spec], shardSize: 0))
      try values.withUnsafeBytes { try writer.write(tensor: spec.name, byteOffset: 0, bytes: $0) }
      try writer.finish()
      try folder.write(
        "config.json", bytes: Array(#"{"architectures": ["LlamaForCausalLM"]}"#.utf8))
      try folder.commit()
    }
    return (dir, all)
  }

  static func cosine(_ a: [Float], _ b: [Float]) -> Double {
    var ab = 0.0
    var aa = 0.0
    var bb = 0.0
    for (x, y) in zip(a, b) {
      ab += Double(x) * Double(y)
      aa += Double(x) * Double(x)
      bb += Double(y) * Double(y)
    }
    return ab / (aa * bb).squareRoot()
  }

  @Test(
    "nearly parallel inputs (cosine > 0.999999) land within 1e-6 of the f64 Karcher mean",
    arguments: [2, 3], 0..<6)
  func nearlyParallel(models count: Int, seed: UInt64) throws {
    let (dir, inputs) = try Self.models(count, spread: 0.001, seed: seed)
    let cosines = (1..<count).map { Self.cosine(inputs[0], inputs[$0]) }
    #expect(cosines.allSatisfy { $0 > 0.999999 && $0 < 0.9999999 }, "\(cosines)")
    let list = (0..<count).map { "{model: m\($0)}" }.joined(separator: ", ")
    let recipe = dir.write(
      "karcher.yml", "merge_method: karcher\nmodels: [\(list)]\nout_dtype: float32\n")
    try runRecipe(recipe, output: dir.path + "/out")
    let got = try #require(try loadTensors(dir.path + "/out")[Self.tensor]).values
    let truth = referenceKarcherMean(inputs)
    let scale = truth.map(abs).max() ?? 1
    let worst = zip(got, truth).map { abs(Double($0) - $1) }.max() ?? .infinity
    #expect(worst / scale <= 1e-6, "worst \(worst / scale) of the largest value")
  }
}

extension KarcherTests {
  @Test(
    "the final norms of two parity models (cosines 0.999999 to 0.9999998), base and ft2 among them",
    arguments: [
      ["ft0", "ft1"], ["ft0", "ft2"], ["ft1", "ft2"], ["base", "ft0"], ["base", "ft1"],
      ["base", "ft2"],
    ])
  func parityNorms(_ pair: [String]) throws {
    let workspace = ModelWorkspace()
    let recipe = workspace.recipe(
      "merge_method: karcher\nmodels: [{model: models/\(pair[0])}, {model: models/\(pair[1])}]\ndtype: float32\nout_dtype: float32\n"
    )
    try runRecipe(recipe, output: workspace.path("out"))
    let got = try #require(try loadTensors(workspace.path("out"))[Self.tensor]).values
    let inputs = try pair.map {
      try #require(try loadTensors(Repository.tinyLlama + "/" + $0)[Self.tensor]).values
    }
    let truth = referenceKarcherMean(inputs)
    let scale = truth.map(abs).max() ?? 1
    let worst = zip(got, truth).map { abs(Double($0) - $1) }.max() ?? .infinity
    #expect(worst / scale <= 1e-6, "worst \(worst / scale) of the largest value")
  }
}

extension KarcherTests {
  @Test("special inputs: a zero model, opposite models, a single model")
  func specialValues() {
    let kernel = Karcher.Kernel(maxIter: 10, tol: 1e-5)
    let x: [Float] = (0..<100_000).map { Float($0 % 7) - 3 + 0.5 }
    let zero = [Float](repeating: 0, count: x.count)
    // A zero model has no direction; it still counts in the mean of the norms (as mergekit's).
    let half = kernel([x, zero], shape: [x.count])
    #expect(zip(half, x).allSatisfy { abs($0 - $1 / 2) <= 1e-6 * abs($1) })
    #expect(kernel([zero, zero], shape: [x.count]) == zero)
    // Opposite models: the mean direction vanishes; mergekit starts from the first and stays.
    let opposite = kernel([x, x.map { -$0 }], shape: [x.count])
    #expect(opposite.allSatisfy { $0.isFinite })
    #expect(zip(opposite, x).allSatisfy { abs($0 - $1) <= 1e-6 * abs($1) })
    #expect(kernel([x], shape: [x.count]) == x)
  }
}
