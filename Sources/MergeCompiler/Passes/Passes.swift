import MergeModel

/// A rewrite of a tensor graph.
///
/// Every pass states what it rewrites and which invariants it keeps. All keep the output's
/// bytes for finite inputs (tested: optimized and unoptimized pipelines write identical files).
public protocol GraphPass: Sendable {
  /// The pass's name in traces (`merge graph --passes`).
  var name: String { get }
  /// Rewrites `graph`; returns whether anything changed.
  func run(_ graph: inout TensorGraph) throws(PassError) -> Bool
}

/// Runs passes in order, verifying the graph after each.
public struct PassPipeline: Sendable {
  /// The passes.
  public var passes: [any GraphPass]

  /// The standard pipeline; `fuse: false` leaves out fusion (`merge run --no-fuse`).
  public static func standard(fuse: Bool = true) -> PassPipeline {
    var passes: [any GraphPass] = [
      FoldIdentities(), DeadInputElimination(), DeadCodeElimination(), ByteCopy(),
    ]
    if fuse {
      passes.append(FuseTaskSum())
      passes.append(FuseConsensus())
    }
    passes.append(DeadCodeElimination())
    return PassPipeline(passes: passes)
  }

  /// Applies every pass to `graph`, calling `trace` with each pass's name and result.
  public func run(_ graph: inout TensorGraph, trace: ((String, TensorGraph, Bool) -> Void)? = nil)
    throws(PassError)
  {
    try GraphVerifier.verify(graph, after: "lowering")
    for pass in passes {
      let changed = try pass.run(&graph)
      try GraphVerifier.verify(graph, after: pass.name)
      trace?(pass.name, graph, changed)
    }
  }
}

// MARK: - Rebuilding

/// Rebuilds a graph from its output, mapping each node through `rewrite` (which sees the
/// already-rebuilt operands), re-hash-consing as it goes and dropping what the output no
/// longer reaches.
func rebuild(
  _ graph: TensorGraph,
  rewrite: (_ id: NodeID, _ node: Node, _ builder: inout GraphBuilder, _ mapped: [NodeID]) ->
    NodeID?
) -> TensorGraph {
  var builder = GraphBuilder()
  var map: [Int: NodeID] = [:]
  func visit(_ id: NodeID) -> NodeID {
    if let m = map[id.index] { return m }
    let node = graph[id]
    let inputs = node.inputs.map(visit)
    let result = rewrite(id, node, &builder, inputs) ?? builder.node(node.op, inputs)
    map[id.index] = result
    return result
  }
  let output = visit(graph.output)
  return builder.graph(output: output, plan: graph.plan)
}

// MARK: - Passes

/// Constant folding of parameters: `scale 1` and `divide 1` are their operand (x·1 and x/1
/// are x exactly, NaN and signed zeros included).
public struct FoldIdentities: GraphPass {
  public let name = "fold-identities"
  public init() {}
  public func run(_ graph: inout TensorGraph) throws(PassError) -> Bool {
    // Most graphs have none: they are left as they are, not rebuilt.
    guard graph.nodes.contains(where: Self.isIdentity) else { return false }
    var changed = false
    graph = rebuild(graph) { _, node, _, mapped in
      guard Self.isIdentity(node) else { return nil }
      changed = true
      return mapped[0]
    }
    return changed
  }

  /// Whether `node` is `scale 1` or `divide 1`.
  static func isIdentity(_ node: Node) -> Bool {
    switch node.op {
    case .scale(let c), .divide(let c): return c == 1
    default: return false
    }
  }
}

/// Dead-input elimination: removes operands that are zero everywhere.
///
/// A task vector scaled by weight 0, or sparsified with density 0, leaves the sign consensus,
/// sum or weighted sum that reads it, so its model is never read for this tensor. Exact for
/// finite inputs: the operand adds 0 and never agrees with an elected sign. mergekit
/// multiplies by the zero weight, so an infinite entry there would give NaN.
public struct DeadInputElimination: GraphPass {
  public let name = "dead-input-elimination"
  public init() {}

  static func isZero(_ id: NodeID, in graph: TensorGraph) -> Bool {
    let node = graph[id]
    switch node.op {
    case .scale(let c): return c == 0 || isZero(node.inputs[0], in: graph)
    case .keepTop:
      if case .sortPrefix(let rank, _) = graph[node.inputs[1]].op, rank == 0 { return true }
      return isZero(node.inputs[0], in: graph)
    case .keepRandom(let density, _): return density <= 0 || isZero(node.inputs[0], in: graph)
    case .rescaleL1, .divide: return isZero(node.inputs[0], in: graph)
    default: return false
    }
  }

  /// Whether `node` has an operand that is zero everywhere (what the pass removes).
  static func readsZero(_ node: Node, in graph: TensorGraph) -> Bool {
    switch node.op {
    case .signConsensus, .sum: return node.inputs.contains { isZero($0, in: graph) }
    case .weightedSum(let weights): return weights.contains(0)
    default: return false
    }
  }

  public func run(_ graph: inout TensorGraph) throws(PassError) -> Bool {
    // Most graphs have none: they are left as they are, not rebuilt.
    let original = graph
    guard original.nodes.contains(where: { Self.readsZero($0, in: original) }) else { return false }
    var changed = false
    graph = rebuild(graph) { _, node, builder, mapped in
      switch node.op {
      case .signConsensus(let weights, let normalize):
        let keep = node.inputs.indices.filter { !Self.isZero(node.inputs[$0], in: original) }
        guard keep.count < node.inputs.count, !keep.isEmpty else { return nil }
        changed = true
        return builder.node(
          .signConsensus(weights: keep.map { weights[$0] }, normalize: normalize),
          keep.map { mapped[$0] })
      case .weightedSum(let weights):
        let keep = node.inputs.indices.filter { weights[$0] != 0 }
        guard keep.count < node.inputs.count, !keep.isEmpty else { return nil }
        changed = true
        return builder.node(
          .weightedSum(weights: keep.map { weights[$0] }), keep.map { mapped[$0] })
      case .sum:
        let keep = node.inputs.indices.filter { !Self.isZero(node.inputs[$0], in: original) }
        guard keep.count < node.inputs.count, !keep.isEmpty else { return nil }
        changed = true
        return keep.count == 1 ? mapped[keep[0]] : builder.node(.sum, keep.map { mapped[$0] })
      default: return nil
      }
    }
    return changed
  }
}

/// Dead-code elimination and common-subexpression elimination: rebuilding from the output
/// drops unreachable nodes and hash-conses equal ones.
public struct DeadCodeElimination: GraphPass {
  public let name = "dead-code-elimination"
  public init() {}
  public func run(_ graph: inout TensorGraph) throws(PassError) -> Bool {
    let before = graph.nodes.count
    graph = rebuild(graph) { _, _, _, _ in nil }
    return graph.nodes.count != before
  }
}

/// Byte copy: storing a loaded tensor in its own dtype, with no rounding in between, copies its
/// bytes instead of decoding and encoding them (passthrough, single-input tensors).
public struct ByteCopy: GraphPass {
  public let name = "byte-copy"
  public init() {}
  public func run(_ graph: inout TensorGraph) throws(PassError) -> Bool {
    let out = graph[graph.output]
    guard case .store(let dtype) = out.op, case .load(let input) = graph[out.inputs[0]].op else {
      return false
    }
    let stored = graph.plan.inputs[input].info.dtype
    guard stored == dtype, graph.plan.inputs[input].adapter == nil,
      graph.plan.inputs[input].alignment == nil,
      graph.plan.inputDType == nil || graph.plan.inputDType == stored
    else {
      return false
    }
    graph = rebuild(graph) { id, _, builder, mapped in
      id == graph.output ? builder.node(.copyBytes, mapped[0]) : nil
    }
    return true
  }
}

/// Matches the tail every task-vector method lowers to, `store(base + [λ·] delta)` with the base
/// a load: the store node, the base, the delta before λ, and λ when it is applied.
func matchBasePlusDelta(_ g: TensorGraph) -> (
  out: Node, base: NodeID, delta: NodeID, lambda: Float?
)? {
  let out = g[g.output]
  guard case .store = out.op else { return nil }
  let top = g[out.inputs[0]]
  guard case .add = top.op, case .load = g[top.inputs[0]].op else { return nil }
  var delta = top.inputs[1]
  var lambda: Float?
  if case .scale(let c) = g[delta].op {
    lambda = c
    delta = g[delta].inputs[0]
  }
  return (out, top.inputs[0], delta, lambda)
}

/// Fusion of task arithmetic's elementwise chain into one kernel: `base + λ·(Σ wᵢ·(xᵢ − base))/d`
/// becomes `fused_task_sum`, which reads each input once per block and keeps every f32
/// operation in the unfused order (so the result is bit-identical).
public struct FuseTaskSum: GraphPass {
  public let name = "fuse-task-sum"
  public init() {}
  public func run(_ graph: inout TensorGraph) throws(PassError) -> Bool {
    let g = graph
    guard let (out, base, scaled, lambda) = matchBasePlusDelta(g) else { return false }
    var value = scaled
    var divisor: Float?
    if case .divide(let d) = g[value].op {
      divisor = d
      value = g[value].inputs[0]
    }
    let terms: [NodeID]
    if case .sum = g[value].op { terms = g[value].inputs } else { terms = [value] }
    var weights: [Float] = []
    var loads: [NodeID] = []
    for term in terms {
      // A weight of 1 was folded away: x·1 is x, so multiplying by 1 again is exact.
      var w: Float = 1
      var vector = term
      if case .scale(let c) = g[term].op {
        w = c
        vector = g[term].inputs[0]
      }
      let tv = g[vector]
      guard case .taskVector = tv.op, tv.inputs[1] == base, case .load = g[tv.inputs[0]].op else {
        return false
      }
      weights.append(w)
      loads.append(tv.inputs[0])
    }
    var builder = GraphBuilder()
    let inputs = ([base] + loads).map { builder.node(g[$0].op, []) }
    let fused = builder.node(
      .fusedTaskSum(weights: weights, divisor: divisor, lambda: lambda), inputs)
    let store = builder.node(out.op, fused)
    graph = builder.graph(output: store, plan: g.plan)
    return true
  }
}

/// Fusion of TIES' final pass into one kernel.
///
/// For each model, the task vector masked by its sort prefix and scaled by its weight, then
/// the sign consensus, λ and the base become `fused_consensus`, which computes them per block
/// without the intermediate buffers; the sort prefixes stay reductions over their task vectors.
/// Every f32 operation keeps the unfused order, so the result is bit-identical.
public struct FuseConsensus: GraphPass {
  public let name = "fuse-consensus"
  public init() {}
  public func run(_ graph: inout TensorGraph) throws(PassError) -> Bool {
    let g = graph
    guard let (out, base, value, lambda) = matchBasePlusDelta(g) else { return false }
    guard case .signConsensus(let weights, let normalize) = g[value].op else { return false }
    var scales: [Float?] = []
    var loads: [NodeID] = []
    var prefixes: [NodeID] = []
    for term in g[value].inputs {
      var scale: Float?
      var masked = term
      if case .scale(let c) = g[term].op {
        scale = c
        masked = g[term].inputs[0]
      }
      let keep = g[masked]
      guard case .keepTop = keep.op, case .sortPrefix = g[keep.inputs[1]].op else { return false }
      let tv = g[keep.inputs[0]]
      guard case .taskVector = tv.op, tv.inputs[1] == base, case .load = g[tv.inputs[0]].op,
        g[keep.inputs[1]].inputs[0] == keep.inputs[0]
      else { return false }
      scales.append(scale)
      loads.append(tv.inputs[0])
      prefixes.append(keep.inputs[1])
    }
    var builder = GraphBuilder()
    let baseNode = builder.node(g[base].op, [])
    var loadNodes: [NodeID] = []
    var prefixNodes: [NodeID] = []
    for (load, prefix) in zip(loads, prefixes) {
      let x = builder.node(g[load].op, [])
      let tau = builder.node(.taskVector, x, baseNode)
      loadNodes.append(x)
      prefixNodes.append(builder.node(g[prefix].op, tau))
    }
    let fused = builder.node(
      .fusedConsensus(weights: weights, scales: scales, normalize: normalize, lambda: lambda),
      [baseNode] + loadNodes + prefixNodes)
    let store = builder.node(out.op, fused)
    graph = builder.graph(output: store, plan: g.plan)
    return true
  }
}
