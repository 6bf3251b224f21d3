#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// mergekit's `multislerp`: barycentric interpolation of any number of models (or task
/// vectors, with a base) on the hypersphere.
public enum MultiSlerp: WholeTensorMethod {
  static let weight = ParameterSpec(
    "weight", .float, .nonBase, default: nil, required: true, "weight of each model")
  static let normalizeWeights = ParameterSpec(
    "normalize_weights", .bool, .shared, default: 1, "divide the weights by their sum")
  static let eps = ParameterSpec(
    "eps", .float, .shared, default: 1e-8, range: .nonNegative,
    "small constant for numerical stability")

  public static let spec = MethodSpec(
    name: "multislerp", prettyName: "Multi-SLERP", parameters: [weight, normalizeWeights, eps],
    base: .optional, minInputs: 1, minNonBase: 1,
    summary: "barycentric interpolation of any number of models on the hypersphere",
    reference: "https://goddard.blog/posts/multislerp-wow-what-a-cool-idea")

  static func kernel(for tensor: TensorPlan) throws(LoweringError) -> Kernel {
    var weights: [Float] = []
    for i in tensor.nonBaseInputs { weights.append(Float(try tensor.number(weight, input: i))) }
    return Kernel(
      weights: weights, normalizeWeights: try tensor.flag(normalizeWeights),
      eps: Float(try tensor.number(eps)), hasBase: tensor.baseIndex != nil)
  }

  /// Inputs: [base,] models.
  struct Kernel: WholeTensorKernel {
    var weights: [Float]
    var normalizeWeights: Bool
    var eps: Float
    var hasBase: Bool

    var cost: KernelCost { KernelCost(weight: 2, bytesPerInput: 4, bytes: 8) }

    /// The weighted spherical mean of the (task) vectors.
    ///
    /// Projects them to the unit sphere, takes the weighted mean direction, interpolates in its
    /// tangent space and maps back, scaled by the weighted mean norm. Norms and dot products
    /// accumulate in f64; the rest is f32 as in mergekit.
    func callAsFunction(_ inputs: [[Float]], shape: [Int]) -> [Float] {
      typealias M = WholeTensorMath
      let base: [Float]? = hasBase ? inputs[0] : nil
      var tensors = Array(inputs.dropFirst(hasBase ? 1 : 0))
      if tensors.count == 1 { return tensors[0] }
      if let base { tensors = tensors.map { M.subtract($0, base) } }
      var weights = self.weights
      if normalizeWeights {
        let total = weights.reduce(Float(0), +)
        weights = weights.map { $0 / total }
      }
      let n = tensors[0].count
      let norms = tensors.map { Float(M.norm($0)) }
      let units = tensors.enumerated().map { i, x in x.map { $0 / (norms[i] + eps) } }
      var mean = [Float](repeating: 0, count: n)
      for (i, u) in units.enumerated() {
        for k in 0..<n { mean[k] += u[k] * weights[i] }
      }
      let meanNorm = Float(M.norm(mean))
      var result: [Float]
      if meanNorm < eps && tensors.count == 2 {
        // mergekit interpolates two models linearly when their mean direction vanishes.
        result = (0..<n).map { tensors[0][$0] * weights[0] + tensors[1][$0] * weights[1] }
      } else if meanNorm < eps {
        // mergekit raises here (the weighted mean direction is zero); keep the weighted
        // Euclidean mean.
        result = (0..<n).map { k in
          tensors.indices.reduce(Float(0)) { $0 + tensors[$1][k] * weights[$1] }
        }
      } else {
        mean = mean.map { $0 / meanNorm }
        var tangent = [Float](repeating: 0, count: n)
        for (i, u) in units.enumerated() {
          let d = Float(M.dot(u, mean))
          for k in 0..<n { tangent[k] += (u[k] - d * mean[k]) * weights[i] }
        }
        let tangentNorm = Float(M.norm(tangent)) + eps
        let c = Float(cos(Double(tangentNorm)))
        let s = Float(sin(Double(tangentNorm))) / tangentNorm
        var averageNorm: Float = 0
        for i in norms.indices { averageNorm += norms[i] * weights[i] }
        result = (0..<n).map { k in (mean[k] * c + tangent[k] * s) * averageNorm }
      }
      if let base { return M.add(result, base) }
      return result
    }
  }
}
