/// mergekit's `passthrough`: one model's tensors as they are, optionally scaled; with slices,
/// layers stacked from several models (frankenmerges).
public enum Passthrough: MergeMethod {
  static let scale = ParameterSpec(
    "scale", .optionalFloat, .input, default: nil, "multiply the tensor by this")

  public static let spec = MethodSpec(
    name: "passthrough", prettyName: "Passthrough", parameters: [scale], base: .ignored,
    minInputs: 1, maxInputs: 1,
    summary: "copy tensors from a single model; with slices, stack layers (frankenmerges)",
    reference: nil)

  public static func lower(
    _ tensor: TensorPlan, loads: [NodeID], seed: UInt64, into b: inout GraphBuilder
  ) throws(LoweringError) -> NodeID {
    guard case .number(let s) = try tensor.value(scale, input: 0) else { return loads[0] }
    return b.node(.scale(Float(s)), loads[0])
  }
}
