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

/// How the fusion lattice classifies an operation (TVM's `OpPatternKind`).
public enum FusionKind: Int, Sendable, Comparable {
  case elementwise = 0, broadcast, injective, reduction, opaque
  public static func < (a: FusionKind, b: FusionKind) -> Bool { a.rawValue < b.rawValue }
}

/// A tensor operation.
///
/// Elementwise operations work on f32 values; reductions produce per-tensor results (a sort
/// prefix, a norm) that later elementwise operations read.
public enum Op: Sendable, Hashable {
  // MARK: Leaves
  /// Input `input` of the tensor plan, decoded to f32 and, with a recipe `dtype`, rounded to it.
  case load(input: Int)

  // MARK: Elementwise
  /// `a − b`: a task vector when `b` is the base model.
  case taskVector
  /// `a + b`.
  case add
  /// `x · c` (f32).
  case scale(Float)
  /// `x / c` (f32 division, as torch divides by a scalar tensor).
  case divide(Float)
  /// Keep the entries in sort prefix input 1 (a top-k by magnitude); zero the rest.
  case keepTop
  /// Keep the entries in sort prefix input 2 but not in sort prefix input 1 (breadcrumbs'
  /// band of ascending ranks).
  case keepBand
  /// Keep each entry with probability `density` (DARE), from the counter-based generator
  /// keyed by (seed, `stream`, element index).
  case keepRandom(density: Float, stream: UInt64)
  /// Keep entries with probability `density − ε + 2ε·rank/(cols−1)` by magnitude rank within
  /// their row (DELLA), random stream as for `keepRandom`. Row-wise.
  case keepByRank(density: Float, epsilon: Float, stream: UInt64, columns: Int)
  /// `x · (‖full‖₁ / ‖x‖₁)` from L1-norm inputs 1 and 2, unless either is below 1e-7.
  case rescaleL1
  /// TIES: from weighted task vectors, elect the sign of their sum per entry, and take
  /// `Σ δᵢ·[sign δᵢ = elected] / Σ wᵢ·[sign δᵢ = elected]` (divisor 0 → 1; no division when
  /// `normalize` is false).
  case signConsensus(weights: [Float], normalize: Bool)
  /// `Σ wᵢ·xᵢ` over the inputs, in order.
  case weightedSum(weights: [Float])
  /// `Σ xᵢ` over the inputs, in order.
  case sum
  /// Round to `dtype` and write: the output tensor.
  case store(DType)
  /// Copy the input's bytes unchanged (non-float buffers, same-dtype passthrough).
  case copyBytes
  /// Fused task arithmetic over inputs `[base, x₁…xₙ]`: `base + λ·((Σ (xᵢ − base)·wᵢ) / d)`,
  /// every f32 operation in the order of the unfused graph; `divisor` and `lambda` are
  /// absent when they are not applied.
  case fusedTaskSum(weights: [Float], divisor: Float?, lambda: Float?)
  /// Fused TIES over inputs `[base, x₁…xₙ, prefix₁…prefixₙ]`: each `(xᵢ − base)` masked by its
  /// sort prefix and scaled by `scales[i]` (when present), then the sign consensus, `λ` and the
  /// base, every f32 operation in the unfused order.
  case fusedConsensus(weights: [Float], scales: [Float?], normalize: Bool, lambda: Float?)
  /// A method whose computation needs whole tensors (norms, dot products, rows, quantiles,
  /// iterations) evaluated as one kernel over its inputs (the base first when there is one).
  case wholeTensor(WholeTensorMethod)

  // MARK: Reductions
  /// The elements that torch's sort of `|x|` (descending or ascending) puts before position
  /// `rank`, equal magnitudes ordered exactly as torch's CPU sort orders them.
  case sortPrefix(rank: Int, descending: Bool)
  /// `Σ |x|`, accumulated in f64 per block and combined in block order.
  case l1Norm
  /// `Σ x²`, accumulated in f64 per block and combined in block order.
  case sumOfSquares
  /// slerp's cosine: `Σ (a/‖a‖)·(b/‖b‖)` over inputs `[a, b, Σa², Σb²]`, each quotient in f32
  /// (a norm at most 1e-8 taken as 1), the products accumulated in f64 per block.
  case normalizedDot

  // MARK: Elementwise on reductions
  /// mergekit's `slerp` of inputs `[a, b, Σa², Σb², cosine]`: `cₐ·a + c_b·b` with
  /// `cₐ = sin((1−t)θ)/sin θ`, `c_b = sin(tθ)/sin θ`, θ = acos(cosine), or `1−t` and `t`
  /// when |cosine| > 0.9995.
  case slerpBlend(t: Float)

  /// Where the operation sits in the fusion lattice.
  public var fusionKind: FusionKind {
    switch self {
    case .sortPrefix, .l1Norm, .sumOfSquares, .normalizedDot: return .reduction
    case .keepByRank: return .injective
    case .copyBytes, .wholeTensor: return .opaque
    default: return .elementwise
    }
  }

  /// Whether the operation produces a per-tensor result rather than elements.
  public var isReduction: Bool { fusionKind == .reduction }

  /// The operation's name in printed graphs.
  public var name: String {
    switch self {
    case .load(let i): return "load #\(i)"
    case .taskVector: return "task_vector"
    case .add: return "add"
    case .scale(let c): return "scale \(c)"
    case .divide(let c): return "divide \(c)"
    case .keepTop: return "keep_top"
    case .keepBand: return "keep_band"
    case .keepRandom(let d, let s): return "keep_random density=\(d) stream=\(String(s, radix: 16))"
    case .keepByRank(let d, let e, let s, let c):
      return "keep_by_rank density=\(d) epsilon=\(e) columns=\(c) stream=\(String(s, radix: 16))"
    case .rescaleL1: return "rescale_l1"
    case .signConsensus(let w, let n): return "sign_consensus weights=\(w) normalize=\(n)"
    case .weightedSum(let w): return "weighted_sum weights=\(w)"
    case .sum: return "sum"
    case .store(let d): return "store \(d.rawValue)"
    case .copyBytes: return "copy_bytes"
    case .wholeTensor(let m): return m.description
    case .fusedConsensus(let w, let c, let n, let l):
      let scales = c.map { $0.map { "\($0)" } ?? "-" }.joined(separator: ", ")
      return "fused_consensus weights=\(w) scales=[\(scales)] normalize=\(n)"
        + (l.map { " lambda=\($0)" } ?? "")
    case .fusedTaskSum(let w, let d, let l):
      return "fused_task_sum weights=\(w)" + (d.map { " divisor=\($0)" } ?? "")
        + (l.map { " lambda=\($0)" } ?? "")
    case .sortPrefix(let r, let d): return "sort_prefix rank=\(r) \(d ? "descending" : "ascending")"
    case .l1Norm: return "l1_norm"
    case .sumOfSquares: return "sum_of_squares"
    case .normalizedDot: return "normalized_dot"
    case .slerpBlend(let t): return "slerp_blend t=\(t)"
    }
  }
}

/// One operation applied to earlier nodes.
public struct Node: Sendable, Hashable {
  /// The operation.
  public var op: Op
  /// Its operands.
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
      if node.op.isReduction && node.inputs.isEmpty { return false }
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
    var out = "tensor \(plan.name) \(plan.shape) → \(plan.outputDType.rawValue)\n"
    for (i, node) in nodes.enumerated() {
      var line = "  %\(i) = \(node.op.name)"
      if !node.inputs.isEmpty {
        line += " " + node.inputs.map(\.description).joined(separator: ", ")
      }
      if case .load(let input) = node.op {
        let ti = plan.inputs[input]
        line +=
          "    ; \(models[ti.model].reference.description):\(ti.tensor) \(ti.info.dtype.rawValue)"
        if plan.baseIndex == input { line += " (base)" }
      }
      out += line + "\n"
    }
    return out
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

/// The methods evaluated as whole-tensor kernels, with their parameters for one tensor.
public enum WholeTensorMethod: Sendable, Hashable, CustomStringConvertible {
  /// Inputs: [base,] first, second.
  case nuslerp(t: Float, rowWise: Bool, flatten: Bool, hasBase: Bool)
  /// Inputs: [base,] models.
  case multislerp(weights: [Float], normalizeWeights: Bool, eps: Float, hasBase: Bool)
  /// Inputs: models (all weighted equally).
  case karcher(maxIterations: Int, tolerance: Double)
  /// Inputs: base, models.
  case modelStock(filterWise: Bool)
  /// Inputs: base, other.
  case nearswap(t: Float)
  /// Inputs: base, models.
  case sce(selectTopK: Double)
  /// Inputs: base, other.
  case arceeFusion
  /// Inputs: base, models.
  case ram(epsilon: Float)
  /// Inputs: base, models.
  case ramPlus(r: Float, alpha: Float, epsilon: Float)

  public var description: String {
    switch self {
    case .nuslerp(let t, let r, let f, let b):
      return "nuslerp t=\(t) row_wise=\(r) flatten=\(f) base=\(b)"
    case .multislerp(let w, let n, let e, let b):
      return "multislerp weights=\(w) normalize_weights=\(n) eps=\(e) base=\(b)"
    case .karcher(let m, let t): return "karcher max_iter=\(m) tol=\(t)"
    case .modelStock(let f): return "model_stock filter_wise=\(f)"
    case .nearswap(let t): return "nearswap t=\(t)"
    case .sce(let k): return "sce select_topk=\(k)"
    case .arceeFusion: return "arcee_fusion"
    case .ram(let e): return "ram epsilon=\(e)"
    case .ramPlus(let r, let a, let e): return "ramplus_tl r=\(r) alpha=\(a) epsilon=\(e)"
    }
  }
}
