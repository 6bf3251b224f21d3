/// mergekit's `linear`: the weighted average of the models (model soups).
///
/// `Σ wᵢ·xᵢ`, divided by `Σ wᵢ` (summed in f32, as torch sums a small f32 tensor) when
/// `normalize`; f32 throughout. A base model is merged as one more input.
public enum Linear: MergeMethod {
  static let weight = ParameterSpec(
    "weight", .float, .input, default: nil, required: true, "weight of each model")
  static let normalize = ParameterSpec(
    "normalize", .bool, .shared, default: 1, "divide by the sum of the weights")

  public static let spec = MethodSpec(
    name: "linear", prettyName: "Linear", parameters: [weight, normalize], base: .ignored,
    minInputs: 1, summary: "weighted average of the models",
    reference: "https://arxiv.org/abs/2203.05482")

  public static func lower(
    _ tensor: TensorPlan, loads: [NodeID], seed: UInt64, into b: inout GraphBuilder
  ) throws(LoweringError) -> NodeID {
    var weights: [Float] = []
    for i in loads.indices { weights.append(Float(try tensor.number(weight, input: i))) }
    let value = b.node(.weightedSum(weights: weights), loads)
    guard try tensor.flag(normalize) else { return value }
    return b.node(.divide(weights.reduce(Float(0), +)), value)
  }
}
