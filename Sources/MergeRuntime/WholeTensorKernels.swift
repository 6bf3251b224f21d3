import Foundation
import MergeCompiler

/// The geometric and statistical methods, each as one kernel over whole f32 tensors, following
/// mergekit 0.1.5 operation by operation: elementwise arithmetic in f32 in torch's order,
/// norms and dot products accumulated in f64 (torch accumulates in f32; the difference is far
/// inside the parity tolerance), scalar trigonometry in f64 rounded to f32 where torch holds the
/// scalar in an f32 tensor.
///
/// Kernels run on one thread per tensor with fixed summation order, so their results do not
/// depend on the thread count.
enum WholeTensorKernels {
  static func run(_ method: WholeTensorMethod, inputs: [[Float]], shape: [Int]) -> [Float] {
    switch method {
    case .nuslerp(let t, let rowWise, let flatten, let hasBase):
      return nuslerp(
        t: t, rowWise: rowWise, flatten: flatten, hasBase: hasBase, inputs, shape: shape)
    case .multislerp(let w, let n, let e, let b):
      return multislerp(weights: w, normalize: n, eps: e, hasBase: b, inputs)
    case .karcher(let m, let t): return karcher(inputs, maxIterations: m, tolerance: t)
    case .modelStock(let f): return modelStock(inputs, filterWise: f, shape: shape)
    case .nearswap(let t): return nearswap(t: t, inputs[0], inputs[1])
    case .sce(let k): return sce(inputs, selectTopK: k)
    case .arceeFusion: return arceeFusion(base: inputs[0], other: inputs[1], shape: shape)
    case .ram(let e): return ram(inputs, epsilon: e, plus: nil)
    case .ramPlus(let r, let a, let e): return ram(inputs, epsilon: e, plus: (r, a))
    }
  }

  // MARK: Helpers

  static func dot(_ a: [Float], _ b: [Float]) -> Double {
    var s = 0.0
    for i in a.indices { s += Double(a[i]) * Double(b[i]) }
    return s
  }

  static func norm(_ a: [Float]) -> Double { dot(a, a).squareRoot() }

  static func subtract(_ a: [Float], _ b: [Float]) -> [Float] { zip(a, b).map { $0 - $1 } }

  /// Vectors of a tensor: `count` of them, `length` elements each, element `j` of vector `v`
  /// at `v·vectorStride + j·elementStride` (strides, not a closure, so the loops stay plain).
  struct Layout {
    var count: Int
    var length: Int
    var vectorStride: Int
    var elementStride: Int

    /// The whole tensor as one vector.
    static func flat(_ n: Int) -> Layout {
      Layout(count: 1, length: n, vectorStride: 0, elementStride: 1)
    }

    @inline(__always)
    func index(_ v: Int, _ j: Int) -> Int { v &* vectorStride &+ j &* elementStride }
  }

  /// The vectors along a tensor's last dimension (its rows), or along its first (its columns,
  /// when `alongFirst`); a 1-D tensor is one vector.
  static func vectors(shape: [Int], alongFirst: Bool) -> Layout {
    let total = shape.reduce(1, *)
    guard shape.count >= 2 else { return .flat(total) }
    if alongFirst {
      let rows = shape[0]
      let columns = total / max(1, rows)
      return Layout(count: columns, length: rows, vectorStride: 1, elementStride: columns)
    }
    let length = shape[shape.count - 1]
    return Layout(
      count: total / max(1, length), length: length, vectorStride: length, elementStride: 1)
  }

  // MARK: nuslerp

  /// mergekit's `nuslerp`: per vector (flattened, rows, or columns with `nuslerp_row_wise`),
  /// `(sin((1−t)θ)·v0 + sin(tθ)·v1) / sin θ`, linear where the vectors are colinear; on task
  /// vectors when there is a base.
  static func nuslerp(
    t: Float, rowWise: Bool, flatten: Bool, hasBase: Bool, _ inputs: [[Float]], shape: [Int]
  ) -> [Float] {
    let base: [Float]? = hasBase ? inputs[0] : nil
    var v0 = inputs[hasBase ? 1 : 0]
    var v1 = inputs[hasBase ? 2 : 1]
    if let base {
      v0 = subtract(v0, base)
      v1 = subtract(v1, base)
    }
    let layout: Layout =
      flatten
      ? .flat(v0.count) : vectors(shape: shape, alongFirst: rowWise)
    var result = [Float](repeating: 0, count: v0.count)
    for v in 0..<layout.count {
      var n0 = 0.0
      var n1 = 0.0
      for j in 0..<layout.length {
        let k = layout.index(v, j)
        n0 += Double(v0[k]) * Double(v0[k])
        n1 += Double(v1[k]) * Double(v1[k])
      }
      let d0 = max(Float(n0.squareRoot()), 1e-7)
      let d1 = max(Float(n1.squareRoot()), 1e-7)
      var c = 0.0
      for j in 0..<layout.length {
        let k = layout.index(v, j)
        c += Double(v0[k] / d0) * Double(v1[k] / d1)
      }
      let cosTheta = min(1, max(-1, Float(c)))
      let colinear = (1 - cosTheta * cosTheta) <= 1e-16
      let theta = Float(acos(Double(colinear ? 0 : cosTheta)))
      let sinTheta = Float(sin(Double(theta)))
      let s0 = Float(sin(Double((1 - t) * theta)))
      let s1 = Float(sin(Double(t * theta)))
      for j in 0..<layout.length {
        let k = layout.index(v, j)
        result[k] = colinear ? (1 - t) * v0[k] + t * v1[k] : (s0 * v0[k] + s1 * v1[k]) / sinTheta
      }
    }
    if let base { return zip(base, result).map { $0 + $1 } }
    return result
  }

  // MARK: multislerp

  /// mergekit's `multislerp`: project the (task) vectors to the unit sphere, take the weighted
  /// mean direction, interpolate in its tangent space and map back, scaled by the weighted
  /// mean norm.
  static func multislerp(
    weights rawWeights: [Float], normalize: Bool, eps: Float, hasBase: Bool, _ inputs: [[Float]]
  ) -> [Float] {
    let base: [Float]? = hasBase ? inputs[0] : nil
    var tensors = Array(inputs.dropFirst(hasBase ? 1 : 0))
    if tensors.count == 1 { return tensors[0] }
    if let base { tensors = tensors.map { subtract($0, base) } }
    var weights = rawWeights
    if normalize {
      let total = weights.reduce(Float(0), +)
      weights = weights.map { $0 / total }
    }
    let n = tensors[0].count
    let norms = tensors.map { Float(norm($0)) }
    let units = tensors.enumerated().map { i, x in x.map { $0 / (norms[i] + eps) } }
    var mean = [Float](repeating: 0, count: n)
    for (i, u) in units.enumerated() {
      for k in 0..<n { mean[k] += u[k] * weights[i] }
    }
    let meanNorm = Float(norm(mean))
    var result: [Float]
    if meanNorm < eps {
      if tensors.count == 2 {
        result = (0..<n).map { tensors[0][$0] * weights[0] + tensors[1][$0] * weights[1] }
        if let base { result = zip(result, base).map { $0 + $1 } }
        return result
      }
      // mergekit raises here; the weighted mean is zero. Keep the weighted Euclidean mean.
      result = (0..<n).map { k in
        tensors.indices.reduce(Float(0)) { $0 + tensors[$1][k] * weights[$1] }
      }
      if let base { result = zip(result, base).map { $0 + $1 } }
      return result
    }
    mean = mean.map { $0 / meanNorm }
    var tangentResult = [Float](repeating: 0, count: n)
    for (i, u) in units.enumerated() {
      let d = Float(dot(u, mean))
      for k in 0..<n { tangentResult[k] += (u[k] - d * mean[k]) * weights[i] }
    }
    let tangentNorm = Float(norm(tangentResult)) + eps
    let c = Float(cos(Double(tangentNorm)))
    let s = Float(sin(Double(tangentNorm))) / tangentNorm
    var averageNorm: Float = 0
    for i in norms.indices { averageNorm += norms[i] * weights[i] }
    result = (0..<n).map { k in (mean[k] * c + tangentResult[k] * s) * averageNorm }
    if let base { result = zip(result, base).map { $0 + $1 } }
    return result
  }

  // MARK: karcher

  /// mergekit's Karcher mean on the unit sphere, every model weighted 1/N (mergekit 0.1.5
  /// takes no per-model weights), scaled by the mean of the norms.
  static func karcher(_ tensors: [[Float]], maxIterations: Int, tolerance tol: Double) -> [Float] {
    if tensors.count == 1 { return tensors[0] }
    let n = tensors[0].count
    let alpha = 1.0 / Double(tensors.count)
    let norms = tensors.map { norm($0) }
    let units: [[Float]] = tensors.enumerated().map { i, x in
      norms[i] == 0 ? [Float](repeating: 0, count: n) : x.map { $0 / Float(norms[i]) }
    }
    let valid = norms.indices.filter { norms[$0] > tol }
    if valid.isEmpty { return [Float](repeating: 0, count: n) }
    let alphas = valid.map { _ in Float(1.0 / Double(valid.count)) }
    var mean = [Float](repeating: 0, count: n)
    for (a, i) in zip(alphas, valid) {
      for k in 0..<n { mean[k] += a * units[i][k] }
    }
    let meanNorm = norm(mean)
    if meanNorm < tol {
      mean = units[valid[0]]
    } else {
      mean = mean.map { $0 / Float(meanNorm) }
    }
    for _ in 0..<maxIterations {
      // Angles from f64 dot products (acos is ill-conditioned near 1, where such models are);
      // the tangent accumulates in f32 as mergekit's does.
      var tangent = [Float](repeating: 0, count: n)
      for (a, i) in zip(alphas, valid) {
        let d = Float(min(1, max(-1, dot(mean, units[i]))))
        let theta = Float(acos(Double(d)))
        if Double(theta) < tol { continue }
        let factor = a * (theta / Float(sin(Double(theta))))
        for k in 0..<n { tangent[k] += factor * (units[i][k] - d * mean[k]) }
      }
      let tangentNorm = Float(norm(tangent))
      if Double(tangentNorm) < tol { break }
      let c = Float(cos(Double(tangentNorm)))
      let s = Float(sin(Double(tangentNorm)))
      mean = (0..<n).map { c * mean[$0] + s * (tangent[$0] / tangentNorm) }
      let unitNorm = norm(mean)
      if unitNorm > tol { mean = mean.map { $0 / Float(unitNorm) } }
    }
    var scale = 0.0
    for v in norms { scale += alpha * v }
    let s = Float(scale)
    return mean.map { s * $0 }
  }

  // MARK: model_stock

  /// mergekit's Model Stock: the mean pairwise cosine of the task vectors (per row with
  /// `filter_wise`) sets `t = N·cos / (1 + (N−1)·cos)`; result `t·mean(models) + (1−t)·base`.
  static func modelStock(_ inputs: [[Float]], filterWise: Bool, shape: [Int]) -> [Float] {
    let w0 = inputs[0]
    let ws = Array(inputs.dropFirst())
    let n = w0.count
    let offsets = ws.map { subtract($0, w0) }
    let layout: Layout =
      filterWise ? vectors(shape: shape, alongFirst: false) : .flat(n)
    let count = Float(ws.count)
    var result = [Float](repeating: 0, count: n)
    for v in 0..<layout.count {
      var total: Float = 0
      var pairs = 0
      for a in offsets.indices {
        for b in (a + 1)..<offsets.count {
          var dab = 0.0
          var naa = 0.0
          var nbb = 0.0
          for j in 0..<layout.length {
            let k = layout.index(v, j)
            dab += Double(offsets[a][k]) * Double(offsets[b][k])
            naa += Double(offsets[a][k]) * Double(offsets[a][k])
            nbb += Double(offsets[b][k]) * Double(offsets[b][k])
          }
          let product = max(Float(naa.squareRoot()) * Float(nbb.squareRoot()), 1e-6)
          total += min(1, max(-1, Float(dab) / product))
          pairs += 1
        }
      }
      let cosTheta = pairs > 0 ? total / Float(pairs) : 0
      let denominator = 1 + (count - 1) * cosTheta
      let t: Float = abs(denominator) < 1e-6 ? 0 : (count * cosTheta) / denominator
      for j in 0..<layout.length {
        let k = layout.index(v, j)
        var sum: Float = 0
        for w in ws { sum += w[k] }
        let average = sum / count
        result[k] = t * average + (1 - t) * w0[k]
      }
    }
    return result
  }

  // MARK: nearswap

  /// mergekit's NearSwap: `w = clamp(t / max(|a−b|, 1e-6), 0, 1)`, `w·b + (1−w)·a`.
  static func nearswap(t: Float, _ a: [Float], _ b: [Float]) -> [Float] {
    a.indices.map { i in
      let w = min(1, max(0, t / max(abs(a[i] - b[i]), 1e-6)))
      return w * b[i] + (1 - w) * a[i]
    }
  }

  // MARK: sce

  /// mergekit's SCE: keep the `select_topk` fraction of entries whose task vectors vary most
  /// across models (torch.topk's choice among equal variances reproduced), elect signs, weight
  /// each model by its task vector's mean square, and average what agrees.
  static func sce(_ inputs: [[Float]], selectTopK: Double) -> [Float] {
    let base = inputs[0]
    let models = Array(inputs.dropFirst())
    if models.isEmpty { return base }
    let n = base.count
    var tvs = models.map { subtract($0, base) }
    if selectTopK < 1 {
      var keep = [Bool](repeating: selectTopK > 0, count: n)
      if selectTopK > 0 {
        // torch.var accumulates in f64 on the CPU (Welford), then rounds to f32.
        let m = Double(tvs.count)
        var variance = [Float](repeating: 0, count: n)
        for k in 0..<n {
          var mean = 0.0
          for tv in tvs { mean += Double(tv[k]) }
          mean /= m
          var v = 0.0
          for tv in tvs { v += (Double(tv[k]) - mean) * (Double(tv[k]) - mean) }
          variance[k] = Float(v / m)
        }
        let nonzero = variance.filter { $0 != 0 }.count
        let k = Int(Double(nonzero) * selectTopK)
        keep = [Bool](repeating: false, count: n)
        if k > 0 {
          let magnitudes = variance.map { abs($0) }
          for i in TorchSelectEmulation.topK(magnitudes, k: k) { keep[i] = true }
        }
      }
      tvs = tvs.map { tv in tv.indices.map { keep[$0] ? tv[$0] : 0 } }
    }
    // Energy weights: the mean square of each task vector, normalized.
    var energies = tvs.map { tv -> Float in Float(dot(tv, tv) / Double(n)) }
    let total = energies.reduce(Float(0), +)
    energies =
      abs(total) < 1e-6
      ? energies.map { _ in 1 / Float(energies.count) } : energies.map { $0 / total }
    var result = [Float](repeating: 0, count: n)
    for k in 0..<n {
      var sum: Float = 0
      for tv in tvs { sum += tv[k] }
      let elected: Float = sum >= 0 ? 1 : -1
      var merged: Float = 0
      var weightSum: Float = 0
      for (i, tv) in tvs.enumerated() {
        let v = tv[k]
        let sign: Float = v > 0 ? 1 : (v < 0 ? -1 : 0)
        let w: Float = sign == elected ? energies[i] : 0
        merged += v * w
        weightSum += w
      }
      result[k] = base[k] + merged / max(weightSum, 1e-6)
    }
    return result
  }

  // MARK: arcee_fusion

  /// mergekit's Arcee Fusion, with the KL divergence in f64.
  ///
  /// Importance is `|Δ|·KL(softmax(other) ‖ softmax(base))` per row (the last dimension); the
  /// change is kept where importance ≥ median + 1.5·IQR. Quantiles are exact (mergekit samples
  /// a million entries of larger tensors at random).
  static func arceeFusion(base: [Float], other: [Float], shape: [Int]) -> [Float] {
    let n = base.count
    let layout = vectors(shape: shape, alongFirst: false)
    var importance = [Float](repeating: 0, count: n)
    for v in 0..<layout.count {
      // In f64: the KL divergence of two nearly uniform softmaxes is a small difference of
      // large terms, which f32 (as mergekit computes it) leaves mostly rounding noise.
      let p = softmax(other, layout: layout, vector: v)
      let q = softmax(base, layout: layout, vector: v)
      var kl = 0.0
      for j in 0..<layout.length {
        let pj = p[j] + 1e-8
        let qj = q[j] + 1e-8
        kl += pj * log(pj / qj)
      }
      for j in 0..<layout.length {
        let k = layout.index(v, j)
        importance[k] = Float(Double(abs(other[k] - base[k])) * kl)
      }
    }
    let sorted = importance.sorted()
    func quantile(_ q: Float) -> Float { sorted[Int(q * Float(sorted.count - 1))] }
    let threshold = quantile(0.5) + 1.5 * (quantile(0.75) - quantile(0.25))
    return (0..<n).map { k in
      base[k] + (other[k] - base[k]) * (importance[k] >= threshold ? 1 : 0)
    }
  }

  static func softmax(_ x: [Float], layout: Layout, vector v: Int) -> [Double] {
    var top = -Double.infinity
    for j in 0..<layout.length { top = max(top, Double(x[layout.index(v, j)])) }
    var e = [Double](repeating: 0, count: layout.length)
    var sum = 0.0
    for j in 0..<layout.length {
      e[j] = exp(Double(x[layout.index(v, j)]) - top)
      sum += e[j]
    }
    return e.map { $0 / sum }
  }

  // MARK: ram / ramplus_tl

  /// mergekit's RAM and RAM+ (tensor-local).
  ///
  /// Entries changed (|τ| > ε) by one model are kept whole, entries changed by several are
  /// averaged over them. RAM+ scales each model's unique updates by
  /// `1 + r·clamp(shared/unique, 0, α)`.
  static func ram(_ inputs: [[Float]], epsilon: Float, plus: (r: Float, alpha: Float)?) -> [Float] {
    let base = inputs[0]
    let models = Array(inputs.dropFirst())
    if models.isEmpty { return base }
    let n = base.count
    let tvs = models.map { subtract($0, base) }
    var counts = [Int](repeating: 0, count: n)
    for tv in tvs {
      for k in 0..<n where abs(tv[k]) > epsilon { counts[k] += 1 }
    }
    var lambdas = [Float](repeating: 1, count: tvs.count)
    if let plus {
      for (i, tv) in tvs.enumerated() {
        var shared = 0
        var unique = 0
        for k in 0..<n where abs(tv[k]) > epsilon {
          if counts[k] > 1 { shared += 1 }
          if counts[k] == 1 { unique += 1 }
        }
        let rho = Float(shared) / max(Float(unique), epsilon)
        lambdas[i] = 1 + plus.r * min(plus.alpha, max(0, rho))
      }
    }
    return (0..<n).map { k in
      var merged: Float = 0
      for (i, tv) in tvs.enumerated() {
        let z: Float = abs(tv[k]) > epsilon ? tv[k] : 0
        let unique: Float = counts[k] == 1 ? 1 : 0
        let overlap: Float = counts[k] > 1 ? 1 : 0
        let term: Float = plus == nil ? z * unique : z * unique * lambdas[i]
        merged += term + z * overlap / Float(max(counts[k], 1))
      }
      return base[k] + merged
    }
  }
}
