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
      KernelCost(weight: 2 * Double(max(1, min(maxIter, 20))), bytesPerInput: 4, bytes: 8)
    }

    func callAsFunction(_ tensors: [[Float]], shape: [Int]) -> [Float] {
      typealias M = WholeTensorMath
      if tensors.count == 1 { return tensors[0] }
      let n = tensors[0].count
      let alpha = 1.0 / Double(tensors.count)
      let norms = tensors.map { M.norm($0) }
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
      let meanNorm = M.norm(mean)
      if meanNorm < tol {
        mean = units[valid[0]]
      } else {
        mean = mean.map { $0 / Float(meanNorm) }
      }
      for _ in 0..<maxIter {
        // Angles from f64 dot products (acos is ill-conditioned near 1, where such models are);
        // the tangent accumulates in f32 as mergekit's does.
        var tangent = [Float](repeating: 0, count: n)
        for (a, i) in zip(alphas, valid) {
          let d = Float(min(1, max(-1, M.dot(mean, units[i]))))
          let theta = Float(acos(Double(d)))
          if Double(theta) < tol { continue }
          let factor = a * (theta / Float(sin(Double(theta))))
          for k in 0..<n { tangent[k] += factor * (units[i][k] - d * mean[k]) }
        }
        let tangentNorm = Float(M.norm(tangent))
        if Double(tangentNorm) < tol { break }
        let c = Float(cos(Double(tangentNorm)))
        let s = Float(sin(Double(tangentNorm)))
        mean = (0..<n).map { c * mean[$0] + s * (tangent[$0] / tangentNorm) }
        let unitNorm = M.norm(mean)
        if unitNorm > tol { mean = mean.map { $0 / Float(unitNorm) } }
      }
      var scale = 0.0
      for v in norms { scale += alpha * v }
      let s = Float(scale)
      return mean.map { s * $0 }
    }
  }
}
