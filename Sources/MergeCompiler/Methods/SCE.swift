/// mergekit's SCE: select entries by their variance across models, weight each model by its
/// task vector's energy, erase sign conflicts.
public enum SCE: WholeTensorMethod {
  static let int8Mask = ParameterSpec(
    "int8_mask", .bool, .shared, default: 0, "store masks as int8 (no effect on results)")
  static let selectTopK = ParameterSpec(
    "select_topk", .float, .shared, default: 1, range: .unit,
    "fraction of entries with the highest variance across models to keep")

  public static let spec = MethodSpec(
    name: "sce", prettyName: "SCE", parameters: [int8Mask, selectTopK], base: .required,
    minInputs: 1, summary: "select by variance, weight by energy, erase sign conflicts",
    reference: "https://arxiv.org/abs/2408.07990")

  static func kernel(for tensor: TensorPlan) throws(LoweringError) -> Kernel {
    Kernel(selectTopk: try tensor.number(selectTopK))
  }

  /// Inputs: base, models.
  struct Kernel: WholeTensorKernel {
    /// The fraction of entries kept (`select_topk`).
    var selectTopk: Double

    var cost: KernelCost { KernelCost(weight: 6, bytesPerInput: 4, bytes: 16) }

    /// Keeps the `select_topk` fraction of entries whose task vectors vary most across models
    /// (torch.topk's choice among equal variances reproduced), elects signs, weights each model
    /// by its task vector's mean square, and averages what agrees; f32 as in mergekit, the
    /// variance and energies accumulated in f64.
    func callAsFunction(_ inputs: [[Float]], shape: [Int]) -> [Float] {
      var (base, tvs) = WholeTensorMath.taskVectors(inputs)
      if tvs.isEmpty { return base }
      let n = base.count
      if selectTopk < 1 {
        let keep = selection(tvs, count: n)
        tvs = tvs.map { tv in tv.indices.map { keep[$0] ? tv[$0] : 0 } }
      }
      // Energy weights: the mean square of each task vector, normalized.
      var energies = tvs.map { tv -> Float in Float(WholeTensorMath.dot(tv, tv) / Double(n)) }
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

    /// Which entries the top-k of the variance across `tvs` keeps.
    private func selection(_ tvs: [[Float]], count n: Int) -> [Bool] {
      guard selectTopk > 0 else { return [Bool](repeating: false, count: n) }
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
      let k = Int(Double(nonzero) * selectTopk)
      var keep = [Bool](repeating: false, count: n)
      if k > 0 {
        for i in TorchSelectEmulation.topK(variance.map { abs($0) }, k: k) { keep[i] = true }
      }
      return keep
    }
  }
}
