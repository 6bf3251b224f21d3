import Foundation
import MergeCompiler
import MergeModel
import Testing
import _TestSupport

@testable import MergeRuntime

/// Each geometric and statistical method on the synthetic multi-block models, against a slow
/// reference computed in f64 from the method's definition.
@Suite struct WholeTensorReferenceTests {
  static let tensor = "model.layers.0.mlp.up_proj.weight"  // 300 × 1000, several blocks
  static let rows = 300
  static let columns = 1000

  func run(_ models: SyntheticModels, _ body: String) throws -> [Float] {
    let path = models.directory.write(
      "r-\(UUID().uuidString).yml", body + "\ndtype: float32\nout_dtype: float32\n")
    let out = models.directory.path + "/o-\(UUID().uuidString)"
    try runRecipe(path, output: out, threads: 2)
    return try #require(try loadTensors(out)[Self.tensor]).values
  }

  func inputs(_ models: SyntheticModels, _ names: [String]) throws -> [[Double]] {
    try names.map { try (models.load($0)[Self.tensor] ?? []).map(Double.init) }
  }

  func expectClose(_ got: [Float], _ want: [Double], _ label: String, relative: Double = 1e-5) {
    let scale = want.map { abs($0) }.max() ?? 1
    let worst = zip(got, want).map { abs(Double($0) - $1) }.max() ?? 0
    #expect(got.count == want.count)
    #expect(worst <= relative * scale + 1e-7, "\(label): worst difference \(worst), scale \(scale)")
  }

  static func dot(_ a: [Double], _ b: [Double]) -> Double {
    zip(a, b).reduce(0) { $0 + $1.0 * $1.1 }
  }
  static func norm(_ a: [Double]) -> Double { dot(a, a).squareRoot() }

  @Test("slerp and nearswap")
  func slerpAndNearswap() throws {
    let models = try SyntheticModels()
    let x = try inputs(models, ["base", "ft2"])
    let got = try run(
      models,
      "merge_method: slerp\nbase_model: base\nmodels: [{model: base}, {model: ft2}]\nparameters: {t: 0.3}"
    )
    let t = 0.3
    let d = min(1, max(-1, Self.dot(x[0], x[1]) / (Self.norm(x[0]) * Self.norm(x[1]))))
    let theta = acos(d)
    // Nearly parallel vectors (|cos| > 0.9995) are interpolated linearly.
    let want = zip(x[0], x[1]).map { a, b in
      abs(d) > 0.9995
        ? (1 - t) * a + t * b
        : sin((1 - t) * theta) / sin(theta) * a + sin(t * theta) / sin(theta) * b
    }
    expectClose(got, want, "slerp")
    #expect(abs(d) < 0.9995, "the spherical path is the one under test")
    let near = try run(
      models,
      "merge_method: nearswap\nbase_model: base\nmodels: [{model: base}, {model: ft2}]\nparameters: {t: 0.0005}"
    )
    let wantNear = zip(x[0], x[1]).map { a, b -> Double in
      let w = min(1, max(0, 0.0005 / max(abs(a - b), 1e-6)))
      return w * b + (1 - w) * a
    }
    expectClose(near, wantNear, "nearswap")
  }

  @Test("nuslerp per row, per column and flattened, with and without a base")
  func nuslerp() throws {
    let models = try SyntheticModels()
    let x = try inputs(models, ["base", "ft0", "ft1"])
    for (rowWise, flatten) in [(false, false), (true, false), (false, true)] {
      let got = try run(
        models,
        """
        merge_method: nuslerp
        base_model: base
        models: [{model: ft0, parameters: {weight: 1}}, {model: ft1, parameters: {weight: 3}}]
        parameters: {nuslerp_row_wise: \(rowWise), nuslerp_flatten: \(flatten)}
        """)
      let t = 0.75
      let v0 = zip(x[1], x[0]).map { $0 - $1 }
      let v1 = zip(x[2], x[0]).map { $0 - $1 }
      var want = x[0]
      let groups: [[Int]]
      if flatten {
        groups = [Array(0..<v0.count)]
      } else if rowWise {
        groups = (0..<Self.columns).map { c in (0..<Self.rows).map { $0 * Self.columns + c } }
      } else {
        groups = (0..<Self.rows).map { r in (0..<Self.columns).map { r * Self.columns + $0 } }
      }
      for g in groups {
        let a = g.map { v0[$0] }
        let b = g.map { v1[$0] }
        let c = Self.dot(a, b) / (Self.norm(a) * Self.norm(b))
        let theta = acos(c)
        for (j, k) in g.enumerated() {
          want[k] += (sin((1 - t) * theta) * a[j] + sin(t * theta) * b[j]) / sin(theta)
        }
      }
      expectClose(got, want, "nuslerp row_wise=\(rowWise) flatten=\(flatten)")
    }
  }

  @Test("multislerp and karcher")
  func sphericalMeans() throws {
    let models = try SyntheticModels()
    let x = try inputs(models, ["ft0", "ft1", "ft2"])
    let got = try run(
      models,
      "merge_method: multislerp\nmodels: [{model: ft0, parameters: {weight: 1}}, {model: ft1, parameters: {weight: 2}}, {model: ft2, parameters: {weight: 1}}]"
    )
    let w = [0.25, 0.5, 0.25]
    let norms = x.map(Self.norm)
    let units = zip(x, norms).map { v, n in v.map { $0 / n } }
    var mean = (0..<x[0].count).map { k in (0..<3).reduce(0.0) { $0 + w[$1] * units[$1][k] } }
    let mn = Self.norm(mean)
    mean = mean.map { $0 / mn }
    var tangent = [Double](repeating: 0, count: mean.count)
    for i in 0..<3 {
      let d = Self.dot(units[i], mean)
      for k in tangent.indices { tangent[k] += w[i] * (units[i][k] - d * mean[k]) }
    }
    let tn = Self.norm(tangent)
    let averageNorm = (0..<3).reduce(0.0) { $0 + w[$1] * norms[$1] }
    let want = (0..<mean.count).map {
      (mean[$0] * cos(tn) + tangent[$0] * sin(tn) / tn) * averageNorm
    }
    expectClose(got, want, "multislerp")
    let karcher = try run(
      models,
      "merge_method: karcher\nmodels: [{model: ft0}, {model: ft1}, {model: ft2}]\nparameters: {max_iter: 30, tol: 1.0e-9}"
    )
    expectClose(karcher, referenceKarcherMean(x.map { $0.map(Float.init) }), "karcher")
  }

  @Test("model_stock per tensor and per row")
  func modelStock() throws {
    let models = try SyntheticModels()
    let x = try inputs(models, ["base", "ft0", "ft1", "ft2"])
    for filterWise in [false, true] {
      let got = try run(
        models,
        "merge_method: model_stock\nbase_model: base\nmodels: [{model: ft0}, {model: ft1}, {model: ft2}]\nparameters: {filter_wise: \(filterWise)}"
      )
      let groups =
        filterWise
        ? (0..<Self.rows).map { r in (0..<Self.columns).map { r * Self.columns + $0 } }
        : [Array(0..<x[0].count)]
      var want = x[0]
      for g in groups {
        let offsets = (1...3).map { m in g.map { x[m][$0] - x[0][$0] } }
        var cosines: [Double] = []
        for a in 0..<3 {
          for b in (a + 1)..<3 {
            cosines.append(
              Self.dot(offsets[a], offsets[b]) / (Self.norm(offsets[a]) * Self.norm(offsets[b])))
          }
        }
        let c = cosines.reduce(0, +) / Double(cosines.count)
        let t = 3 * c / (1 + 2 * c)
        for k in g {
          let average = (x[1][k] + x[2][k] + x[3][k]) / 3
          want[k] = t * average + (1 - t) * x[0][k]
        }
      }
      expectClose(got, want, "model_stock filter_wise=\(filterWise)")
    }
  }

  @Test("ram, ramplus_tl and sce without selection")
  func overlapMethods() throws {
    let models = try SyntheticModels()
    let x = try inputs(models, ["base", "ft0", "ft1", "ft2"])
    let tvs = (1...3).map { m in zip(x[m], x[0]).map { $0 - $1 } }
    let eps = 1e-5
    let counts = (0..<x[0].count).map { k in tvs.filter { abs($0[k]) > eps }.count }
    let ram = try run(
      models,
      "merge_method: ram\nbase_model: base\nmodels: [{model: ft0}, {model: ft1}, {model: ft2}]")
    let wantRam = (0..<x[0].count).map { k -> Double in
      var s = x[0][k]
      for tv in tvs where abs(tv[k]) > eps {
        s += counts[k] == 1 ? tv[k] : tv[k] / Double(counts[k])
      }
      return s
    }
    expectClose(ram, wantRam, "ram")
    let plus = try run(
      models,
      "merge_method: ramplus_tl\nbase_model: base\nmodels: [{model: ft0}, {model: ft1}, {model: ft2}]\nparameters: {r: 0.5, alpha: 0.4}"
    )
    let lambdas = tvs.map { tv -> Double in
      let shared = tv.indices.filter { abs(tv[$0]) > eps && counts[$0] > 1 }.count
      let unique = tv.indices.filter { abs(tv[$0]) > eps && counts[$0] == 1 }.count
      return 1 + 0.5 * min(0.4, max(0, Double(shared) / max(Double(unique), eps)))
    }
    let wantPlus = (0..<x[0].count).map { k -> Double in
      var s = x[0][k]
      for (i, tv) in tvs.enumerated() where abs(tv[k]) > eps {
        s += counts[k] == 1 ? tv[k] * lambdas[i] : tv[k] / Double(counts[k])
      }
      return s
    }
    expectClose(plus, wantPlus, "ramplus_tl")
    let sce = try run(
      models,
      "merge_method: sce\nbase_model: base\nmodels: [{model: ft0}, {model: ft1}, {model: ft2}]")
    let energies = tvs.map { tv in tv.reduce(0) { $0 + $1 * $1 } / Double(tv.count) }
    let total = energies.reduce(0, +)
    let wantSce = (0..<x[0].count).map { k -> Double in
      let elected: Double = tvs.reduce(0) { $0 + $1[k] } >= 0 ? 1 : -1
      var merged = 0.0
      var weight = 0.0
      for (i, tv) in tvs.enumerated() where (tv[k] > 0 ? 1 : (tv[k] < 0 ? -1 : 0)) == elected {
        merged += tv[k] * energies[i] / total
        weight += energies[i] / total
      }
      return x[0][k] + merged / max(weight, 1e-6)
    }
    expectClose(sce, wantSce, "sce")
  }

  @Test("sce's selection keeps the k entries of largest variance")
  func sceSelection() throws {
    let models = try SyntheticModels()
    let x = try inputs(models, ["base", "ft0", "ft1", "ft2"])
    let tvs = (1...3).map { m in zip(x[m], x[0]).map { Float($0 - $1) } }
    let got = try run(
      models,
      "merge_method: sce\nbase_model: base\nmodels: [{model: ft0}, {model: ft1}, {model: ft2}]\nparameters: {select_topk: 0.3}"
    )
    let variance = (0..<tvs[0].count).map { k -> Float in
      let mean = tvs.reduce(0.0) { $0 + Double($1[k]) } / 3
      return Float(tvs.reduce(0.0) { $0 + (Double($1[k]) - mean) * (Double($1[k]) - mean) } / 3)
    }
    let k = Int(Double(variance.filter { $0 != 0 }.count) * 0.3)
    let changed = (0..<got.count).filter { Double(got[$0]) != x[0][$0] }
    // Kept entries change the base (unless their task vectors cancel); dropped ones never do.
    #expect(changed.count <= k && changed.count > k * 9 / 10)
    let threshold = changed.map { variance[$0] }.min() ?? 0
    let above = variance.filter { $0 > threshold }.count
    #expect(above <= k, "every entry of larger variance than a kept one is kept")
  }

  @Test("arcee_fusion keeps the changes whose importance reaches median + 1.5·IQR")
  func arceeFusion() throws {
    let models = try SyntheticModels()
    let x = try inputs(models, ["base", "ft1"])
    let got = try run(
      models, "merge_method: arcee_fusion\nbase_model: base\nmodels: [{model: base}, {model: ft1}]")
    var importance = [Double](repeating: 0, count: x[0].count)
    for r in 0..<Self.rows {
      let range = (r * Self.columns)..<((r + 1) * Self.columns)
      func softmax(_ v: [Double]) -> [Double] {
        let m = v.max() ?? 0
        let e = v.map { exp($0 - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
      }
      let p = softmax(Array(x[1][range])).map { $0 + 1e-8 }
      let q = softmax(Array(x[0][range])).map { $0 + 1e-8 }
      let kl = zip(p, q).reduce(0) { $0 + $1.0 * log($1.0 / $1.1) }
      for k in range { importance[k] = abs(x[1][k] - x[0][k]) * kl }
    }
    let sorted = importance.sorted()
    let n = Double(sorted.count - 1)
    let threshold = sorted[Int(0.5 * n)] + 1.5 * (sorted[Int(0.75 * n)] - sorted[Int(0.25 * n)])
    let want = x[0].indices.map { importance[$0] >= threshold ? x[1][$0] : x[0][$0] }
    let disagreements = zip(got, want).filter { Double($0.0) != $0.1 }.count
    // Entries within f32 rounding of the threshold may fall either way.
    #expect(disagreements <= 3, "\(disagreements) entries disagree")
  }
}
