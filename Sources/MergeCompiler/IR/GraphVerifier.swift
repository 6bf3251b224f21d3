/// Checks the invariants every graph keeps, after lowering and after every pass: operands come
/// before their users; each operation has the operands its ``OpSignature`` declares, of the
/// kinds it declares (a `keep_top` masks by a sort prefix of the very values it masks, a
/// `rescale_l1` reads two L1 norms, …); loads name inputs of the tensor's plan; the output is
/// the one store (or byte copy), and nothing else is.
public enum GraphVerifier {
  /// Throws when `graph` breaks an invariant.
  public static func verify(_ graph: TensorGraph, after pass: String) throws(PassError) {
    func fail(_ reason: String) -> PassError {
      PassError(pass: "verifier after \(pass)", tensor: graph.plan.name, reason: reason)
    }
    guard graph.output.index < graph.nodes.count else {
      throw fail("the output node does not exist")
    }
    for (i, node) in graph.nodes.enumerated() {
      if let problem = problem(with: node, at: i, in: graph) {
        throw fail("%\(i) (\(node.op.name)) \(problem)")
      }
    }
  }

  /// What is wrong with `node`, the `index`th of `graph`, if anything.
  static func problem(with node: Node, at index: Int, in graph: TensorGraph) -> String? {
    if let late = node.inputs.first(where: { $0.index >= index }) {
      return "uses %\(late.index), which does not come before it"
    }
    let signature = node.op.signature
    guard signature.arity.contains(node.inputs.count) else {
      return "has \(node.inputs.count) operands"
    }
    for (k, input) in node.inputs.enumerated() {
      guard let constraint = signature.constraint(k) else { continue }
      let operand = graph[input]
      guard operand.op.satisfies(constraint) else {
        return "operand \(k) is \(operand.op.name), not \(constraint)"
      }
      if case .sortPrefix(let of) = constraint, operand.inputs.first != node.inputs[of] {
        return "operand \(k) is not \(constraint)"
      }
    }
    if case .load(let input) = node.op, !graph.plan.inputs.indices.contains(input) {
      return "reads input #\(input), which the tensor does not have"
    }
    let isOutput = NodeID(index: index) == graph.output
    if isOutput != (signature.kind == .output) {
      return isOutput ? "is the output but does not store it" : "stores but is not the output"
    }
    return nil
  }
}

/// Why a pass or the verifier rejected a graph.
public struct PassError: Error, Sendable, CustomStringConvertible {
  /// The pass (or "verifier after …").
  public var pass: String
  /// The output tensor whose graph it is.
  public var tensor: String
  /// What is wrong.
  public var reason: String
  public var description: String { "\(pass) on tensor '\(tensor)': \(reason)" }
}
