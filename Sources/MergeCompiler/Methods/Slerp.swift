import MergeRecipe

/// mergekit's `slerp`: spherical interpolation between the base (`t = 0`) and the other model
/// (`t = 1`) over the flattened tensor.
///
/// Lowered to two sums of squares, the cosine of the normalized tensors (a second pass, as it
/// needs the norms), then one elementwise pass: no tensor is held whole.
public enum Slerp: MergeMethod {
  static let t = ParameterSpec(
    "t", .float, .shared, default: nil, required: true,
    "interpolation factor: 0 gives the base model, 1 the other",
    advice: { t in (0...1).contains(t) ? nil : .extrapolating(t) })

  public static let spec = MethodSpec(
    name: "slerp", prettyName: "SLERP", parameters: [t], base: .required, minInputs: 2,
    maxInputs: 2, summary: "spherical interpolation between the base and one other model",
    reference: "https://en.wikipedia.org/wiki/Slerp")

  public static func lower(
    _ tensor: TensorPlan, loads: [NodeID], seed: UInt64, into b: inout GraphBuilder
  ) throws(LoweringError) -> NodeID {
    let baseIndex = try tensor.requireBase(for: spec)
    guard loads.count == 2 else {
      throw LoweringError(
        tensor: tensor.name, reason: "slerp needs the base and one other model",
        origin: tensor.origin)
    }
    let a = loads[baseIndex]
    let other = loads[1 - baseIndex]
    let squaresA = b.node(.sumOfSquares, a)
    let squaresB = b.node(.sumOfSquares, other)
    let cosine = b.node(.normalizedDot, a, other, squaresA, squaresB)
    return b.node(
      .slerpBlend(t: Float(try tensor.number(t))), a, other, squaresA, squaresB, cosine)
  }
}

extension Diagnostic.Message {
  fileprivate static func extrapolating(_ t: Double) -> Self {
    Self(
      "slerp-extrapolates", .warning,
      "t = \(format(t)) lies outside [0, 1], so slerp extrapolates beyond the two models")
  }
}
