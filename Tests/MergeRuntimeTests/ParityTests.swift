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
    "breadcrumbs", "breadcrumbs_ties", "passthrough_slices",
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
