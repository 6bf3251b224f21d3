import Foundation
import MergeCompiler
import MergeModel
import Testing
import _TestSupport

@testable import MergeRuntime

/// Synthetic bf16 models with tensors of several blocks, many equal magnitudes (bf16 values
/// repeat) and special values (±0, subnormals, huge values).
final class SyntheticModels: Sendable {
  let directory = TemporaryDirectory()
  static let shapes: [(String, [Int])] = [
    ("model.embed_tokens.weight", [512, 300]),
    ("model.layers.0.mlp.up_proj.weight", [300, 1000]),
    ("model.layers.0.input_layernorm.weight", [1000]),
    ("model.norm.weight", [1000]),
    ("lm_head.weight", [512, 300]),
  ]

  init() throws {
    var rng = SplitMix64(state: 99)
    func gaussian() -> Float {
      let u1 = Float(rng.next() >> 40 | 1) / Float(1 << 24)
      let u2 = Float(rng.next() >> 40) / Float(1 << 24)
      return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
    var base: [String: [Float]] = [:]
    for (name, shape) in Self.shapes {
      let n = shape.reduce(1, *)
      var values = (0..<n).map { _ in gaussian() * 0.02 }
      // Special values in the base model.
      values[0] = 0
      values[1] = -0.0
      values[2] = 1e-39  // subnormal, representable in bf16
      if name == "lm_head.weight" { values[3] = 3e30 }
      base[name] = values.map {
        FloatConversion.float(fromBFloat16: FloatConversion.bfloat16(from: $0))
      }
    }
    try Self.write(base, to: directory.path + "/base")
    for m in 0..<3 {
      var ft: [String: [Float]] = [:]
      for (name, values) in base {
        ft[name] = values.enumerated().map { i, v in
          var x = v
          if rng.next() % 10 < 6 { x += gaussian() * 0.001 * Float(m + 1) }
          if i == 4 { x = -v }
          return FloatConversion.float(fromBFloat16: FloatConversion.bfloat16(from: x))
        }
      }
      try Self.write(ft, to: directory.path + "/ft\(m)")
    }
  }

  static func write(_ tensors: [String: [Float]], to path: String) throws {
    let folder = try OutputFolder(destination: path)
    let specs = shapes.map { TensorSpec(name: $0.0, dtype: .bfloat16, shape: $0.1) }
    let writer = try SafetensorsWriter(
      folder: folder, layout: ShardLayout(tensors: specs, shardSize: 0))
    for spec in specs {
      let bits = (tensors[spec.name] ?? []).map(FloatConversion.bfloat16(from:))
      try bits.withUnsafeBytes { try writer.write(tensor: spec.name, byteOffset: 0, bytes: $0) }
    }
    try writer.finish()
    try folder.write(
      "config.json",
      bytes: Array(
        #"{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_hidden_layers": 1, "tie_word_embeddings": false}"#
          .utf8))
    try folder.commit()
  }

  func load(_ model: String) throws -> [String: [Float]] {
    try loadTensors(directory.path + "/" + model).mapValues(\.values)
  }
}

/// libstdc++'s `std::sort`, written plainly (the whole array, no shortcuts), as a reference
/// for the executor's partial emulation.
func referenceStdSort(_ a: inout [(Float, Int)], _ less: (Float, Float) -> Bool) {
  func lt(_ i: Int, _ j: Int) -> Bool { less(a[i].0, a[j].0) }
  func medianToFirst(_ r: Int, _ x: Int, _ y: Int, _ z: Int) {
    if lt(x, y) {
      if lt(y, z) { a.swapAt(r, y) } else if lt(x, z) { a.swapAt(r, z) } else { a.swapAt(r, x) }
    } else if lt(x, z) {
      a.swapAt(r, x)
    } else if lt(y, z) {
      a.swapAt(r, z)
    } else {
      a.swapAt(r, y)
    }
  }
  func partition(_ f: Int, _ l: Int, _ p: Int) -> Int {
    var first = f
    var last = l
    while true {
      while lt(first, p) { first += 1 }
      last -= 1
      while lt(p, last) { last -= 1 }
      if !(first < last) { return first }
      a.swapAt(first, last)
      first += 1
    }
  }
  func loop(_ f: Int, _ l: Int, _ d: Int) {
    var last = l
    var depth = d
    while last - f > 16 {
      if depth == 0 {
        // Not reached by these tests' sizes; fall back to a full sort of the range.
        let sorted = a[f..<last].sorted { less($0.0, $1.0) }
        a.replaceSubrange(f..<last, with: sorted)
        return
      }
      depth -= 1
      medianToFirst(f, f + 1, f + (last - f) / 2, last - 1)
      let cut = partition(f + 1, last, f)
      loop(cut, last, depth)
      last = cut
    }
  }
  let n = a.count
  guard n > 1 else { return }
  loop(0, n, 2 * (Int.bitWidth - 1 - n.leadingZeroBitCount))
  // Final insertion sort over everything.
  for i in 1..<n {
    let v = a[i]
    var j = i
    while j > 0 && less(v.0, a[j - 1].0) {
      a[j] = a[j - 1]
      j -= 1
    }
    a[j] = v
  }
}

@Suite struct KernelReferenceTests {
  static let desc: @Sendable (Float, Float) -> Bool = { ($0.isNaN && !$1.isNaN) || $0 > $1 }
  static let asc: @Sendable (Float, Float) -> Bool = { (!$0.isNaN && $1.isNaN) || $0 < $1 }

  /// Indices at sorted positions `range` of `|tau|`.
  static func positions(_ tau: [Float], descending: Bool, _ range: Range<Int>) -> Set<Int> {
    var a = tau.enumerated().map { (abs($0.element), $0.offset) }
    referenceStdSort(&a, descending ? desc : asc)
    return Set(a[range].map(\.1))
  }

  func merge(_ models: SyntheticModels, _ recipe: String) throws -> [String: [Float]] {
    let path = models.directory.write("recipe-\(UUID().uuidString).yml", recipe)
    let out = models.directory.path + "/out-\(UUID().uuidString)"
    try runRecipe(path, output: out, threads: 2)
    return try loadTensors(out).mapValues(\.values)
  }

  @Test("TIES on multi-block tensors equals a slow reference with a full sort")
  func ties() throws {
    let models = try SyntheticModels()
    let weights: [Float] = [1.0, -0.4, 0.7]
    let densities = [0.3, 0.6, 0.9]
    let out = try merge(
      models,
      """
      merge_method: ties
      base_model: base
      models:
        - {model: ft0, parameters: {weight: 1.0, density: 0.3}}
        - {model: ft1, parameters: {weight: -0.4, density: 0.6}}
        - {model: ft2, parameters: {weight: 0.7, density: 0.9}}
      parameters: {normalize: true, lambda: 1.5}
      dtype: float32
      out_dtype: float32
      """)
    let base = try models.load("base")
    let fts = try (0..<3).map { try models.load("ft\($0)") }
    for (name, b) in base {
      let n = b.count
      var deltas: [[Float]] = []
      for m in 0..<3 {
        let tau = zip(fts[m][name] ?? [], b).map { $0 - $1 }
        let k = max(1, Int(densities[m] * Double(n)))
        let kept = Self.positions(tau, descending: true, 0..<k)
        deltas.append(tau.indices.map { kept.contains($0) ? tau[$0] * weights[m] : 0 })
      }
      var expected = [Float](repeating: 0, count: n)
      for i in 0..<n {
        let total = deltas[0][i] + deltas[1][i] + deltas[2][i]
        let elected: Float = total >= 0 ? 1 : -1
        var mixed: Float = 0
        var divisor: Float = 0
        for m in 0..<3 where (deltas[m][i] > 0 ? 1 : (deltas[m][i] < 0 ? -1 : 0)) == elected {
          mixed += deltas[m][i]
          divisor += weights[m]
        }
        if divisor == 0 { divisor = 1 }
        expected[i] = b[i] + (mixed / divisor) * 1.5
      }
      let got = try #require(out[name])
      #expect(got.count == n)
      let mismatches = zip(got, expected).filter { $0.0.bitPattern != $0.1.bitPattern }.count
      #expect(mismatches == 0, "\(name): \(mismatches) of \(n) differ")
    }
  }

  @Test("breadcrumbs' band and task arithmetic on multi-block tensors equal a slow reference")
  func breadcrumbs() throws {
    let models = try SyntheticModels()
    let out = try merge(
      models,
      """
      merge_method: breadcrumbs
      base_model: base
      models:
        - {model: ft0, parameters: {weight: 0.8, density: 0.5, gamma: 0.1}}
        - {model: ft1, parameters: {weight: 0.3, density: 0.9, gamma: 0.2}}
      dtype: float32
      out_dtype: float32
      """)
    let base = try models.load("base")
    let fts = try (0..<2).map { try models.load("ft\($0)") }
    let params: [(Float, Double, Double)] = [(0.8, 0.5, 0.1), (0.3, 0.9, 0.2)]
    for (name, b) in base {
      let n = b.count
      var sum = [Float](repeating: 0, count: n)
      for (m, (w, density, gamma)) in params.enumerated() {
        let tau = zip(fts[m][name] ?? [], b).map { $0 - $1 }
        let target = Int(density * Double(n))
        let bottom = max(0, n - target - Int(gamma * Double(n)))
        let kept = Self.positions(tau, descending: false, bottom..<(bottom + target))
        for i in 0..<n { sum[i] += kept.contains(i) ? tau[i] * w : 0 }
      }
      let expected = zip(b, sum).map { $0 + $1 }
      let got = try #require(out[name])
      let mismatches = zip(got, expected).filter { $0.0.bitPattern != $0.1.bitPattern }.count
      #expect(mismatches == 0, "\(name): \(mismatches) of \(n) differ")
    }
  }

  @Test(
    "linear with a gradient rounds once to bf16, matching a Double reference within one rounding")
  func linear() throws {
    let models = try SyntheticModels()
    let out = try merge(
      models,
      """
      merge_method: linear
      models:
        - {model: ft0, parameters: {weight: [1.0, 3.0]}}
        - {model: ft1, parameters: {weight: 2.0}}
      out_dtype: bfloat16
      """)
    let a = try models.load("ft0")
    let b = try models.load("ft1")
    for (name, x) in a {
      // One layer: t = 1 for layer tensors, 0 elsewhere.
      let w0: Double = name.contains("layers.") ? 3 : 1
      let got = try #require(out[name])
      for i in x.indices {
        let exact = (w0 * Double(x[i]) + 2 * Double(b[name]![i])) / (w0 + 2)
        let rounded = FloatConversion.float(
          fromBFloat16: FloatConversion.bfloat16(from: Float(exact)))
        let step = abs(rounded) / 128 + Float.leastNonzeroMagnitude
        #expect(abs(got[i] - rounded) <= step, "\(name)[\(i)]: \(got[i]) vs \(exact)")
      }
    }
  }

  @Test("DARE's kept fraction and L1 norm hold on multi-block tensors, for any block")
  func dare() throws {
    let models = try SyntheticModels()
    let out = try merge(
      models,
      """
      merge_method: dare_linear
      base_model: base
      models:
        - {model: ft0, parameters: {weight: 1.0, density: 0.3}}
      dtype: float32
      out_dtype: float32
      """)
    let base = try models.load("base")
    let ft = try models.load("ft0")
    let name = "model.layers.0.mlp.up_proj.weight"
    let b = base[name] ?? []
    let tau = zip(ft[name] ?? [], b).map { $0 - $1 }
    let kept = zip(out[name] ?? [], b).map { $0 - $1 }
    // Per block of 65,536 elements, the kept fraction is near 0.3 (no block-level bias).
    let block = 65_536
    for start in stride(from: 0, to: tau.count, by: block) {
      let end = min(tau.count, start + block)
      let nonzero = (start..<end).filter { tau[$0] != 0 }.count
      let keptCount = (start..<end).filter { tau[$0] != 0 && kept[$0] != 0 }.count
      let fraction = Double(keptCount) / Double(nonzero)
      #expect(
        abs(fraction - 0.3) < 5 * (0.21 / Double(nonzero)).squareRoot(),
        "block at \(start): \(fraction)")
    }
    let ratio = kept.reduce(0.0) { $0 + Double(abs($1)) } / tau.reduce(0.0) { $0 + Double(abs($1)) }
    #expect(abs(ratio - 1) < 1e-4)
  }
}
