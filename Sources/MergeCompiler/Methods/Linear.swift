import MergeRecipe

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

  /// With `normalize`, weights that sum to 0 divide every value by zero: mergekit writes
  /// the NaN and infinite model; merge refuses it unless `--allow-nonfinite`.
  public static func validate(_ tensor: TensorPlan) -> [Diagnostic] {
    guard tensor.shared[normalize.name]?.value.bool == true else { return [] }
    var sum = Float(0)
    for i in tensor.inputs.indices {
      guard let w = tensor.perInput[i][weight.name]?.value.number else { return [] }
      sum += Float(w)
    }
    guard sum == 0 else { return [] }
    let origins = tensor.inputs.indices.compactMap { tensor.perInput[$0][weight.name]?.origin }
    return [
      Diagnostic(
        .zeroWeightSum, at: origins.first,
        notes: [
          Diagnostic.Note(
            "set 'normalize: false' for the plain weighted sum, or pass --allow-nonfinite to write it as mergekit does"
          )
        ])
    ]
  }

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

extension Diagnostic.Message {
  fileprivate static let zeroWeightSum = Self(
    "zero-weight-sum",
    "the weights sum to 0, so 'normalize' divides every value by zero: the model would be NaN and infinite"
  )
}
