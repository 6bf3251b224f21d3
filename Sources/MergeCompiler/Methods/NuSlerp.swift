#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// mergekit's `nuslerp`: spherical interpolation of two models, or of their task vectors when
/// there is a base, per row, per column or over the flattened tensor.
public enum NuSlerp: WholeTensorMethod {
  static let weight = ParameterSpec(
    "weight", .float, .nonBase, default: nil, required: true,
    "relative weight of each of the two models")
  static let rowWise = ParameterSpec(
    "nuslerp_row_wise", .bool, .shared, default: 0,
    "interpolate row vectors instead of column vectors")
  static let flatten = ParameterSpec(
    "nuslerp_flatten", .bool, .shared, default: 1,
    "interpolate the flattened tensors as single vectors")

  public static let spec = MethodSpec(
    name: "nuslerp", prettyName: "NuSLERP", parameters: [weight, rowWise, flatten],
    base: .optional, minInputs: 1, minNonBase: 2, maxNonBase: 2,
    summary: "spherical interpolation of two models (or their task vectors, with a base)",
    reference: nil)

  static func kernel(for tensor: TensorPlan) throws(LoweringError) -> Kernel {
    let others = tensor.nonBaseInputs
    guard others.count == 2 else {
      throw LoweringError(
        tensor: tensor.name, reason: "nuslerp needs two models besides the base",
        origin: tensor.origin)
    }
    let w0 = try tensor.number(weight, input: others[0])
    let w1 = try tensor.number(weight, input: others[1])
    let total = w0 + w1
    return Kernel(
      t: Float(abs(total) < 1e-6 ? 0.5 : w1 / total), rowWise: try tensor.flag(rowWise),
      flatten: try tensor.flag(flatten), hasBase: tensor.baseIndex != nil)
  }

  /// Inputs: [base,] first, second.
  struct Kernel: WholeTensorKernel {
    var t: Float
    var rowWise: Bool
    var flatten: Bool
    var hasBase: Bool

    var cost: KernelCost { KernelCost(weight: 2, bytes: 8) }

    /// The spherical interpolation of the two (task) vectors.
    ///
    /// Per vector (flattened, rows, or columns with `nuslerp_row_wise`),
    /// `(sin((1−t)θ)·v0 + sin(tθ)·v1) / sin θ`, linear where the vectors are colinear; on task
    /// vectors when there is a base. Norms and the cosine accumulate in f64; the rest is f32 as
    /// in mergekit.
    func callAsFunction(_ inputs: [[Float]], shape: [Int]) -> [Float] {
      typealias M = WholeTensorMath
      let base: [Float]? = hasBase ? inputs[0] : nil
      var v0 = inputs[hasBase ? 1 : 0]
      var v1 = inputs[hasBase ? 2 : 1]
      if let base {
        v0 = M.subtract(v0, base)
        v1 = M.subtract(v1, base)
      }
      let layout: M.Layout =
        flatten ? .flat(v0.count) : M.vectors(shape: shape, alongFirst: rowWise)
      var result = [Float](repeating: 0, count: v0.count)
      for v in 0..<layout.count {
        interpolate(v0, v1, vector: v, of: layout, into: &result)
      }
      if let base { return M.add(base, result) }
      return result
    }

    private func interpolate(
      _ v0: [Float], _ v1: [Float], vector v: Int, of layout: WholeTensorMath.Layout,
      into result: inout [Float]
    ) {
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
  }
}
