#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// mergekit's Karcher mean: the Riemannian mean of the models on the hypersphere, scaled by the
/// mean of their norms; every model weighted 1/N (mergekit 0.1.5 takes no per-model weights).
public enum Karcher: WholeTensorMethod {
  static let maxIterations = ParameterSpec(
    "max_iter", .int, .shared, default: 10, range: .nonNegative, "most iterations")
  static let tolerance = ParameterSpec(
    "tol", .float, .shared, default: 1e-5, range: .nonNegative, "convergence tolerance")

  public static let spec = MethodSpec(
    name: "karcher", prettyName: "Karcher Mean", parameters: [maxIterations, tolerance],
    base: .ignored, minInputs: 1,
    summary: "Riemannian (Karcher) mean of the models on the hypersphere",
    reference: "https://arxiv.org/abs/2603.04972")

  static func kernel(for tensor: TensorPlan) throws(LoweringError) -> Kernel {
    Kernel(maxIter: Int(try tensor.number(maxIterations)), tol: try tensor.number(tolerance))
  }

  /// Inputs: models (all weighted equally).
  struct Kernel: WholeTensorKernel {
    /// Most iterations (`max_iter`).
    var maxIter: Int
    /// Convergence tolerance (`tol`).
    var tol: Double

    var cost: KernelCost {
      KernelCost(weight: 2 * Double(max(1, min(maxIter, 20))), bytesPerInput: 4, bytes: 12)
    }

    /// The Karcher mean of the unit vectors of `tensors`, scaled by the mean of their norms.
    ///
    /// As mergekit's: units in f32, the start at their normalized average, at most `max_iter`
    /// steps along the mean of the log maps, a model skipped where its angle is below `tol`,
    /// stop when the step is shorter than `tol`. The angles are well-conditioned where
    /// mergekit's are not: θ = 2·asin(‖u − m‖/2) from the differences, with
    /// `u − cos θ·m = (u − m) + (‖u − m‖²/2)·m`, in f64, where mergekit takes acos of an f32
    /// dot product near 1 (which rounds to 1 for one of two symmetric models and skips it).
    /// The tangent and the step are computed in f64 and the mean rounded to f32 after each.
    func callAsFunction(_ tensors: [[Float]], shape: [Int]) -> [Float] {
      typealias M = WholeTensorMath
      if tensors.count == 1 { return tensors[0] }
      let n = tensors[0].count
      let norms = tensors.map { M.norm($0) }
      let units: [[Float]] = tensors.enumerated().map { i, x in
        norms[i] == 0 ? [Float](repeating: 0, count: n) : x.map { $0 / Float(norms[i]) }
      }
      let valid = norms.indices.filter { norms[$0] > tol }
      if valid.isEmpty { return [Float](repeating: 0, count: n) }
      let alpha = Float(1.0 / Double(valid.count))
      var mean = [Float](repeating: 0, count: n)
      for i in valid {
        for k in 0..<n { mean[k] += alpha * units[i][k] }
      }
      let meanNorm = M.norm(mean)
      mean = meanNorm < tol ? units[valid[0]] : mean.map { $0 / Float(meanNorm) }
      for _ in 0..<maxIter {
        let tangent = self.tangent(at: mean, towards: valid.map { units[$0] }, weight: alpha)
        let length = tangent.reduce(0) { $0 + $1 * $1 }.squareRoot()
        if length < tol { break }
        let c = cos(length)
        let s = sin(length) / length
        mean = (0..<n).map { Float(c * Double(mean[$0]) + s * tangent[$0]) }
        let unitNorm = M.norm(mean)
        if unitNorm > tol { mean = mean.map { Float(Double($0) / unitNorm) } }
      }
      var scale = 0.0
      for v in norms { scale += v / Double(tensors.count) }
      let s = Float(scale)
      return mean.map { s * $0 }
    }

    /// `Σ wᵢ·log_m(uᵢ)` over the units farther than `tol` from `mean`, in f64.
    private func tangent(at mean: [Float], towards units: [[Float]], weight: Float) -> [Double] {
      var tangent = [Double](repeating: 0, count: mean.count)
      for u in units {
        var squared = 0.0
        for k in mean.indices {
          let d = Double(u[k]) - Double(mean[k])
          squared += d * d
        }
        let theta = 2 * asin(min(1, squared.squareRoot() / 2))
        // An antipodal model (sin θ = 0) has no direction to pull in.
        guard theta >= tol, sin(theta) > 0 else { continue }
        let factor = Double(weight) * theta / sin(theta)
        let radial = squared / 2  // 1 − cos θ
        for k in mean.indices {
          tangent[k] += factor * ((Double(u[k]) - Double(mean[k])) + radial * Double(mean[k]))
        }
      }
      return tangent
    }
  }
}
