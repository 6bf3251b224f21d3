#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// mergekit's Arcee Fusion: take the other model's changes where their KL-weighted importance
/// is high.
public enum ArceeFusion: WholeTensorMethod {
  public static let spec = MethodSpec(
    name: "arcee_fusion", prettyName: "Arcee Fusion", parameters: [], base: .required,
    minInputs: 2, maxInputs: 2,
    summary: "take the other model's changes where their KL-weighted importance is high",
    reference: "https://arcee.ai")

  static func kernel(for tensor: TensorPlan) -> Kernel { Kernel() }

  /// Inputs: base, other.
  struct Kernel: WholeTensorKernel {
    var cost: KernelCost { KernelCost(weight: 3, bytes: 8) }

    /// The base, with the other model's changes where they are important.
    ///
    /// Importance is `|Δ|·KL(softmax(other) ‖ softmax(base))` per row (the last dimension); the
    /// change is kept where importance ≥ median + 1.5·IQR. The KL divergence is computed in f64:
    /// that of two nearly uniform softmaxes is a small difference of large terms, which f32 (as
    /// mergekit computes it) leaves mostly rounding noise. Quantiles are exact (mergekit samples
    /// a million entries of larger tensors at random).
    func callAsFunction(_ inputs: [[Float]], shape: [Int]) -> [Float] {
      let base = inputs[0]
      let other = inputs[1]
      let n = base.count
      // No entries, no quantiles: nothing to take.
      if n == 0 { return base }
      let layout = WholeTensorMath.vectors(shape: shape, alongFirst: false)
      var importance = [Float](repeating: 0, count: n)
      for v in 0..<layout.count {
        let p = Self.softmax(other, layout: layout, vector: v)
        let q = Self.softmax(base, layout: layout, vector: v)
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

    /// The softmax of vector `v` of `x`, in f64.
    static func softmax(_ x: [Float], layout: WholeTensorMath.Layout, vector v: Int) -> [Double] {
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
  }
}
