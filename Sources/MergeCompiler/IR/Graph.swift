import MergeModel
import MergeRecipe

/// A node's position in its ``TensorGraph``.
public struct NodeID: Sendable, Hashable, Comparable, CustomStringConvertible {
  /// The index into ``TensorGraph/nodes``.
  public let index: Int
  /// The node at position `index`.
  public init(index: Int) { self.index = index }
  public static func < (a: NodeID, b: NodeID) -> Bool { a.index < b.index }
  public var description: String { "%\(index)" }
}

/// One operation applied to earlier nodes.
public struct Node: Sendable, Hashable {
  /// The operation.
  public var op: Op
  /// Its operands, each an earlier node of the same graph.
  public var inputs: [NodeID]
}

/// The graph that computes one output tensor: a small DAG ending in a `store`.
///
/// Built by ``GraphBuilder``, which hash-conses nodes: a node equal to an existing one (same
/// operation, same operands) is the existing one, so shared subexpressions exist once.
public struct TensorGraph: Sendable {
  /// The nodes in topological order.
  public var nodes: [Node]
  /// The node that stores the output.
  public var output: NodeID
  /// The plan the graph computes.
  public var plan: TensorPlan

  /// The node at `id`.
  public subscript(id: NodeID) -> Node { nodes[id.index] }

  /// How many times each load's bytes are read, by node index of the load.
  ///
  /// Once per pass over the tensor that evaluates a chain reaching it (each reduction, then
  /// the final pass).
  /// Reductions in `skipping` (already known, from a cache) make no pass.
  public func passesReading(skipping: Set<Int> = []) -> [(node: Int, input: Int, passes: Int)] {
    func reaches(_ id: NodeID, _ target: Int) -> Bool {
      if id.index == target { return true }
      let node = self[id]
      return node.inputs.contains { input in
        // A reduction's value is computed once, beforehand: it does not re-read in this pass.
        self[input].op.isReduction ? false : reaches(input, target)
      }
    }
    var result: [(node: Int, input: Int, passes: Int)] = []
    for (i, node) in nodes.enumerated() {
      guard case .load(let input) = node.op else { continue }
      var passes = reaches(output, i) ? 1 : 0
      for r in nodes.indices where nodes[r].op.isReduction && !skipping.contains(r) {
        if nodes[r].inputs.contains(where: { reaches($0, i) }) { passes += 1 }
      }
      result.append((i, input, passes))
    }
    return result
  }

  /// The graph as text, one node per line: `%3 = task_vector %1, %0`.
  public func text(models: [ResolvedModel]) -> String {
    "tensor \(plan.name) \(plan.shape) → \(plan.outputDType.rawValue)\n"
      + nodeLines(models: models).joined(separator: "\n") + "\n"
  }

  /// One line per node, numbered from `first`, each prefixed by `tag` (a stage's name in an
  /// inlined program); a load of a stage tensor whose store `produced` numbers says so.
  public func nodeLines(
    models: [ResolvedModel], first: Int = 0, tag: String? = nil, produced: [Int: Int] = [:]
  ) -> [String] {
    var lines: [String] = []
    let prefix = tag.map { "[\($0)] " } ?? ""
    for (i, node) in nodes.enumerated() {
      var line = "  \(prefix)%\(first + i) = \(node.op.name)"
      if !node.inputs.isEmpty {
        line += " " + node.inputs.map { "%\(first + $0.index)" }.joined(separator: ", ")
      }
      if case .load(let input) = node.op {
        let ti = plan.inputs[input]
        if let store = produced[input], let stage = models[ti.model].stage {
          line +=
            "    ; = %\(store), stage '\(stage)':\(ti.tensor) \(ti.info.dtype.rawValue) in memory"
        } else {
          line +=
            "    ; \(models[ti.model].reference.description):\(ti.tensor) \(ti.info.dtype.rawValue)"
        }
        switch ti.adapter {
        case .delta(let d)?: line += " + \(d.scale)·B·A (LoRA rank \(d.rank))"
        case .replaced(let stored)?: line += " replaced by the adapter's '\(stored)'"
        case .taskVector(let sparse)?: line += " + τ (\(sparse ? "sparse " : "")task vector)"
        case nil: break
        }
        if let alignment = ti.alignment {
          let moved = alignment.rows.enumerated().filter { $0.element != .own($0.offset) }.count
          line +=
            " rows laid out in the output vocabulary (\(alignment.paddedCount) rows, \(moved) not its own same-id row)"
        }
        if plan.baseIndex == input { line += " (base)" }
      }
      lines.append(line)
    }
    return lines
  }
}

/// Builds a ``TensorGraph`` with structural hashing (tinygrad's UOp cache).
public struct GraphBuilder {
  private var nodes: [Node] = []
  private var cache: [Node: NodeID] = [:]

  /// Creates an empty builder.
  public init() {}

  /// The node for `op` applied to `inputs`, reusing an equal node when there is one.
  public mutating func node(_ op: Op, _ inputs: NodeID...) -> NodeID {
    node(op, inputs)
  }

  /// The node for `op` applied to `inputs`, reusing an equal node when there is one.
  public mutating func node(_ op: Op, _ inputs: [NodeID]) -> NodeID {
    let n = Node(op: op, inputs: inputs)
    if let id = cache[n] { return id }
    let id = NodeID(index: nodes.count)
    nodes.append(n)
    cache[n] = id
    return id
  }

  /// The finished graph with `output` as its result.
  public func graph(output: NodeID, plan: TensorPlan) -> TensorGraph {
    TensorGraph(nodes: nodes, output: output, plan: plan)
  }
}
