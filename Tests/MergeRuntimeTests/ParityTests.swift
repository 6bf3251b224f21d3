import Foundation
import MergeCompiler
import MergeModel
import Testing
import _TestSupport

@testable import MergeRuntime

/// Compares outputs with mergekit 0.1.5's, with the tolerances of Tests/Parity/README.md.
@Suite struct ParityTests {
  static let deterministic = [
    "linear", "linear_gradient", "task_arithmetic", "ties", "ties_bf16", "ties_dtype_bf16",
    "breadcrumbs", "breadcrumbs_ties", "passthrough_slices", "slerp", "nuslerp", "multislerp",
    "nearswap", "model_stock", "karcher", "sce", "ram", "ramplus_tl",
    // mergekit-multi's final stage; mergekit's `modules` form.
    "multi_two_stage", "multi_three_stage", "modules_linear",
  ]

  /// Tensors where mergekit's result is wrong and merge's is not (README, compatibility):
  /// karcher iterates in f32, where acos of dot products near 1 is noise; for this layer norm
  /// mergekit lands 5.7e-4 from the Karcher mean, which merge reaches within 1e-7.
  static let exceptions: [String: Set<String>] = [
    "karcher": ["model.layers.3.input_layernorm.weight"]
  ]

  @Test(
    "merge run matches mergekit's output within the parity tolerances", arguments: deterministic)
  func parity(_ name: String) throws {
    let dir = TemporaryDirectory()
    let output = dir.path + "/out"
    try runRecipe(Repository.parity + "/recipes/\(name).yml", output: output)
    let ours = try loadTensors(output)
    let expected = try loadTensors(Repository.parity + "/expected/\(name)")
    #expect(Set(ours.keys) == Set(expected.keys))
    // Half-precision compute recipes are compared with the bf16 tolerance (README).
    let halfCompute = name == "ties_dtype_bf16"
    for (tensor, e) in expected {
      guard let o = ours[tensor] else { continue }
      if Self.exceptions[name]?.contains(tensor) == true { continue }
      #expect(o.dtype == e.dtype, "\(tensor)")
      #expect(o.shape == e.shape, "\(tensor)")
      let largest = e.values.reduce(Float(0)) { max($0, abs($1)) }
      let tolerance: Float =
        (e.dtype == .bfloat16 || halfCompute) ? largest / 128 : 1e-6 + 1e-5 * largest
      var worst: Float = 0
      for (a, b) in zip(o.values, e.values) { worst = max(worst, abs(a - b)) }
      #expect(worst <= tolerance, "\(name) \(tensor): max difference \(worst) > \(tolerance)")
    }
    // config.json is mergekit's, key for key.
    let ourConfig = try JSONValue.parse(try FileSystem.read(output + "/config.json"))
    let expectedConfig = try JSONValue.parse(
      try FileSystem.read(Repository.parity + "/expected/\(name)/config.json"))
    let ourKeys = Dictionary(uniqueKeysWithValues: ourConfig.objectValue ?? [])
    for (key, value) in expectedConfig.objectValue ?? [] {
      #expect(ourKeys[key] == value, "\(name) config.json '\(key)'")
    }
  }

  @Test(
    "karcher's exception: merge reaches the Karcher mean where mergekit's f32 iteration does not")
  func karcherException() throws {
    let dir = TemporaryDirectory()
    try runRecipe(Repository.parity + "/recipes/karcher.yml", output: dir.path + "/out")
    let ours = try loadTensors(dir.path + "/out")
    let expected = try loadTensors(Repository.parity + "/expected/karcher")
    let models = try (0..<3).map { try loadTensors(Repository.tinyLlama + "/ft\($0)") }
    for tensor in Self.exceptions["karcher"] ?? [] {
      let truth = referenceKarcherMean(models.map { $0[tensor]?.values ?? [] })
      let o = try #require(ours[tensor]).values
      let e = try #require(expected[tensor]).values
      let ourError = zip(o, truth).map { abs(Double($0) - $1) }.max() ?? 0
      let theirError = zip(e, truth).map { abs(Double($0) - $1) }.max() ?? 0
      #expect(ourError < 1e-6)
      #expect(theirError > 1e-4)
    }
  }

  @Test(
    "arcee_fusion's exception: every entry is the base's or the fine-tune's, and at least 94% agree with mergekit"
  )
  func arceeFusion() throws {
    let dir = TemporaryDirectory()
    try runRecipe(Repository.parity + "/recipes/arcee_fusion.yml", output: dir.path + "/out")
    let ours = try loadTensors(dir.path + "/out")
    let expected = try loadTensors(Repository.parity + "/expected/arcee_fusion")
    let base = try loadTensors(Repository.tinyLlama + "/base")
    let other = try loadTensors(Repository.tinyLlama + "/ft0")
    var differing = 0
    var total = 0
    for (tensor, e) in expected {
      let o = try #require(ours[tensor]).values
      let b = try #require(base[tensor]).values
      let f = try #require(other[tensor]).values
      for i in o.indices {
        #expect(o[i] == b[i] || o[i] == f[i], "\(tensor)[\(i)]")
        if o[i] != e.values[i] { differing += 1 }
      }
      total += o.count
    }
    print("arcee_fusion: \(differing) of \(total) entries differ from mergekit")
    #expect(Double(differing) / Double(total) < 0.06)
  }

  @Test("ties_dtype_bf16 lands within a few percent of mergekit's own bf16 arithmetic")
  func nativeHalfPrecision() throws {
    let dir = TemporaryDirectory()
    try runRecipe(Repository.parity + "/recipes/ties_dtype_bf16.yml", output: dir.path + "/out")
    let ours = try loadTensors(dir.path + "/out")
    let native = try loadTensors(Repository.parity + "/expected-native/ties_dtype_bf16")
    var worstRelative: Float = 0
    for (tensor, e) in native {
      guard let o = ours[tensor] else { continue }
      let largest = e.values.reduce(Float(0)) { max($0, abs($1)) }
      var worst: Float = 0
      for (a, b) in zip(o.values, e.values) { worst = max(worst, abs(a - b)) }
      worstRelative = max(worstRelative, worst / largest)
    }
    print(
      "ties_dtype_bf16 vs mergekit's bf16 arithmetic: worst difference \(worstRelative * 100)% of a tensor's largest value"
    )
    #expect(worstRelative < 0.06)
  }
}

/// The Karcher mean on the sphere, uniform weights, iterated to convergence in f64.
func referenceKarcherMean(_ tensors: [[Float]]) -> [Double] {
  let xs = tensors.map { $0.map(Double.init) }
  let norms = xs.map { x in x.reduce(0) { $0 + $1 * $1 }.squareRoot() }
  let units = zip(xs, norms).map { x, n in x.map { $0 / n } }
  let a = 1.0 / Double(xs.count)
  var mean = (0..<xs[0].count).map { k in units.reduce(0) { $0 + a * $1[k] } }
  func normalize(_ v: [Double]) -> [Double] {
    let n = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
    return v.map { $0 / n }
  }
  mean = normalize(mean)
  for _ in 0..<60 {
    var tangent = [Double](repeating: 0, count: mean.count)
    for u in units {
      let d = min(1, max(-1, zip(mean, u).reduce(0) { $0 + $1.0 * $1.1 }))
      let theta = acos(d)
      if theta < 1e-15 { continue }
      for k in tangent.indices { tangent[k] += a * (theta / sin(theta)) * (u[k] - d * mean[k]) }
    }
    let tn = tangent.reduce(0) { $0 + $1 * $1 }.squareRoot()
    if tn < 1e-12 { break }
    mean = normalize((0..<mean.count).map { cos(tn) * mean[$0] + sin(tn) * tangent[$0] / tn })
  }
  let scale = norms.reduce(0) { $0 + a * $1 }
  return mean.map { $0 * scale }
}
