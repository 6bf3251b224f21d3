/// Lowers one output tensor's plan to its ``TensorGraph``.
///
/// Every graph has the same frame: one load per input, the method's own nodes (its
/// ``MergeMethod/lower(_:loads:seed:into:)``), and a store rounding to the output dtype. A
/// tensor that is not floating point (an integer buffer) is copied from its first input as it
/// is, whatever the method.
public enum Lowering {
  /// The graph that computes `tensor` with `method`; `seed` keys the random methods' streams.
  public static func lower(_ tensor: TensorPlan, method: any MergeMethod.Type, seed: UInt64)
    throws(LoweringError) -> TensorGraph
  {
    var b = GraphBuilder()
    let loads = tensor.inputs.indices.map { b.node(.load(input: $0)) }
    if !(tensor.inputs.first?.info.dtype.isFloatingPoint ?? true) {
      let out = b.node(.copyBytes, loads[0])
      return b.graph(output: out, plan: tensor)
    }
    let value = try method.lower(tensor, loads: loads, seed: seed, into: &b)
    let out = b.node(.store(tensor.outputDType), value)
    return b.graph(output: out, plan: tensor)
  }
}
