import MergeModel

/// How an operation computes, which decides how the executor evaluates it and what the passes
/// may do with it (TVM's `OpPatternKind`, with the kinds this IR has).
public enum OpKind: Sendable, Hashable {
  /// Each output element from the same element of each operand, one block at a time.
  case elementwise
  /// Each output row from the same row of its operand (the block holds whole rows).
  case rowWise
  /// One number per tensor from all its elements (a norm, a dot product), computed in a pass
  /// before the elements that read it.
  case scalarReduction
  /// A set of element positions from all the elements (a sort prefix), computed in a pass
  /// before the elements that read it.
  case selection
  /// The whole tensor at once, from whole decoded inputs (geometric and statistical methods).
  case wholeTensor
  /// Writes the output tensor; exactly one per graph, its last node.
  case output

  /// Whether the operation's result is known per tensor rather than per element.
  public var isReduction: Bool { self == .scalarReduction || self == .selection }
}

/// What one operand of an operation must be; the verifier checks every operand.
public enum OperandConstraint: Sendable, Hashable, CustomStringConvertible {
  /// Elements: an elementwise or row-wise operation (a load included).
  case values
  /// A load of an input tensor.
  case load
  /// Elements, or a whole-tensor kernel (what a store writes).
  case valuesOrKernel
  /// A sort prefix of the same operation's operand at position `of` (its positions only make
  /// sense over the magnitudes they were selected from).
  case sortPrefix(of: Int)
  /// Any sort prefix.
  case anySortPrefix
  /// An L1 norm.
  case l1Norm
  /// A sum of squares.
  case sumOfSquares
  /// slerp's normalized dot product.
  case normalizedDot
  /// A dot product.
  case dot

  public var description: String {
    switch self {
    case .values: return "elements"
    case .load: return "a load"
    case .valuesOrKernel: return "elements or a whole-tensor kernel"
    case .sortPrefix(let i): return "a sort prefix of operand \(i)"
    case .anySortPrefix: return "a sort prefix"
    case .l1Norm: return "an L1 norm"
    case .sumOfSquares: return "a sum of squares"
    case .normalizedDot: return "a normalized dot product"
    case .dot: return "a dot product"
    }
  }
}

/// An operation's kind and operands, declared once per operation in ``Op/signature``.
public struct OpSignature: Sendable {
  /// How it computes.
  public var kind: OpKind
  /// The constraint on each operand, in order.
  public var operands: [OperandConstraint]
  /// When set, any number of further operands of this kind may follow (at least one operand
  /// in all).
  public var variadic: OperandConstraint?

  /// The operand counts accepted.
  public var arity: ClosedRange<Int> {
    variadic == nil ? operands.count...operands.count : max(1, operands.count)...Int.max
  }

  /// The constraint on operand `i`.
  public func constraint(_ i: Int) -> OperandConstraint? {
    i < operands.count ? operands[i] : variadic
  }
}

/// A tensor operation.
///
/// Elementwise operations work on f32 values; reductions produce per-tensor results (a sort
/// prefix, a norm) that later elementwise operations read. What each operation is — its kind,
/// its operands, its identity in the reduction cache and its printed name — is declared in
/// this file; how it is evaluated is the runtime's.
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
  /// `Σ wᵢ·xᵢ` over the inputs, in order, each term multiply-added with one rounding (as
  /// torch's `addcmul_` with fused multiply-add, which mergekit's linear uses).
  case weightedSum(weights: [Float])
  /// `Σ xᵢ` over the inputs, in order.
  case sum
  /// Input `position` where its magnitude is the largest of all the inputs' (equal largest
  /// magnitudes go to the first input that has one), zero elsewhere: disjoint task vectors,
  /// so that no two change one entry (merge's `disjoint: true`).
  case disjoint(position: Int)
  /// Fused task arithmetic over inputs `[base, x₁…xₙ]`: `base + λ·((Σ (xᵢ − base)·wᵢ) / d)`,
  /// every f32 operation in the order of the unfused graph; `divisor` and `lambda` are
  /// absent when they are not applied.
  case fusedTaskSum(weights: [Float], divisor: Float?, lambda: Float?)
  /// Fused TIES over inputs `[base, x₁…xₙ, prefix₁…prefixₙ]`: each `(xᵢ − base)` masked by its
  /// sort prefix and scaled by `scales[i]` (when present), then the sign consensus, `λ` and the
  /// base, every f32 operation in the unfused order.
  case fusedConsensus(weights: [Float], scales: [Float?], normalize: Bool, lambda: Float?)

  // MARK: Reductions
  /// The elements that torch's sort of `|x|` (descending or ascending) puts before position
  /// `rank`, equal magnitudes ordered exactly as torch's CPU sort orders them.
  case sortPrefix(rank: Int, descending: Bool)
  /// `Σ |x|`, accumulated in f64 per block and combined in block order.
  case l1Norm
  /// `Σ x²`, accumulated in f64 per block and combined in block order.
  case sumOfSquares
  /// `Σ a·b` over inputs `[a, b]`, accumulated in f64 per block and combined in block order.
  case dot
  /// slerp's cosine: `Σ (a/‖a‖)·(b/‖b‖)` over inputs `[a, b, Σa², Σb²]`, each quotient in f32
  /// (a norm at most 1e-8 taken as 1), the products accumulated in f64 per block.
  case normalizedDot

  // MARK: Elementwise on reductions
  /// `x − c·y` over inputs `[x, y, ⟨x, y⟩, ⟨y, y⟩]` with `c = ⟨x, y⟩/⟨y, y⟩` (0 when `⟨y, y⟩`
  /// is 0), `c` in f64 rounded to f32: one step of Gram–Schmidt (merge's `orthogonalize`).
  case projectOut

  /// mergekit's `slerp` of inputs `[a, b, Σa², Σb², cosine]`: `cₐ·a + c_b·b` with
  /// `cₐ = sin((1−t)θ)/sin θ`, `c_b = sin(tθ)/sin θ`, θ = acos(cosine), or `1−t` and `t`
  /// when |cosine| > 0.9995.
  case slerpBlend(t: Float)

  // MARK: Whole tensors
  /// A method's kernel over whole tensors (norms, dot products, rows, quantiles, iterations),
  /// evaluated at once over its loads (the base first when there is one).
  case wholeTensor(AnyWholeTensorKernel)

  // MARK: Output
  /// Round to `dtype` and write: the output tensor.
  case store(DType)
  /// Copy the input's bytes unchanged (non-float buffers, same-dtype passthrough).
  case copyBytes

  /// The operation's kind and the constraint on each operand.
  public var signature: OpSignature {
    func sig(_ kind: OpKind, _ operands: [OperandConstraint], _ variadic: OperandConstraint? = nil)
      -> OpSignature
    {
      OpSignature(kind: kind, operands: operands, variadic: variadic)
    }
    func values(_ n: Int) -> [OperandConstraint] { Array(repeating: .values, count: n) }
    switch self {
    case .load: return sig(.elementwise, [])
    case .taskVector, .add: return sig(.elementwise, values(2))
    case .scale, .divide, .keepRandom: return sig(.elementwise, values(1))
    case .keepByRank: return sig(.rowWise, values(1))
    case .keepTop: return sig(.elementwise, [.values, .sortPrefix(of: 0)])
    case .keepBand: return sig(.elementwise, [.values, .sortPrefix(of: 0), .sortPrefix(of: 0)])
    case .rescaleL1: return sig(.elementwise, [.values, .l1Norm, .l1Norm])
    case .signConsensus(let w, _), .weightedSum(let w): return sig(.elementwise, values(w.count))
    case .sum, .disjoint: return sig(.elementwise, [], .values)
    case .fusedTaskSum(let w, _, _):
      return sig(.elementwise, Array(repeating: .load, count: w.count + 1))
    case .fusedConsensus(let w, _, _, _):
      return sig(
        .elementwise,
        Array(repeating: .load, count: w.count + 1)
          + Array(repeating: .anySortPrefix, count: w.count))
    case .sortPrefix: return sig(.selection, values(1))
    case .l1Norm, .sumOfSquares: return sig(.scalarReduction, values(1))
    case .normalizedDot:
      return sig(.scalarReduction, [.values, .values, .sumOfSquares, .sumOfSquares])
    case .dot: return sig(.scalarReduction, [.values, .values])
    case .projectOut: return sig(.elementwise, [.values, .values, .dot, .sumOfSquares])
    case .slerpBlend:
      return sig(.elementwise, [.values, .values, .sumOfSquares, .sumOfSquares, .normalizedDot])
    case .wholeTensor: return sig(.wholeTensor, [], .load)
    case .store: return sig(.output, [.valuesOrKernel])
    case .copyBytes: return sig(.output, [.load])
    }
  }

  /// How the operation computes.
  public var kind: OpKind { signature.kind }

  /// Whether the operation produces a per-tensor result rather than elements.
  public var isReduction: Bool { kind.isReduction }

  /// Whether this operation satisfies `constraint` as operand of another (`sortPrefix(of:)`
  /// also needs the operands compared, which ``GraphVerifier`` does).
  public func satisfies(_ constraint: OperandConstraint) -> Bool {
    switch (constraint, self) {
    case (.values, _): return kind == .elementwise || kind == .rowWise
    case (.load, .load): return true
    case (.valuesOrKernel, _):
      return kind == .elementwise || kind == .rowWise || kind == .wholeTensor
    case (.sortPrefix, .sortPrefix), (.anySortPrefix, .sortPrefix): return true
    case (.l1Norm, .l1Norm), (.sumOfSquares, .sumOfSquares), (.normalizedDot, .normalizedDot),
      (.dot, .dot):
      return true
    default: return false
    }
  }

  /// The operation's identity in reduction-cache keys, version 1.
  ///
  /// Independent of ``name``: printed graphs may change, keys may not, or every user's cached
  /// reductions would be recomputed (or, worse, two operations share an entry). These strings
  /// are frozen: a change to one needs a new version (and new cache keys). They are what `name`
  /// printed when the cache was introduced, so entries written since then stay valid.
  public var identity: String {
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
    case .disjoint(let p): return "disjoint position=\(p)"
    case .fusedTaskSum(let w, let d, let l):
      return "fused_task_sum weights=\(w)" + (d.map { " divisor=\($0)" } ?? "")
        + (l.map { " lambda=\($0)" } ?? "")
    case .fusedConsensus(let w, let c, let n, let l):
      let scales = c.map { $0.map { "\($0)" } ?? "-" }.joined(separator: ", ")
      return "fused_consensus weights=\(w) scales=[\(scales)] normalize=\(n)"
        + (l.map { " lambda=\($0)" } ?? "")
    case .sortPrefix(let r, let d): return "sort_prefix rank=\(r) \(d ? "descending" : "ascending")"
    case .l1Norm: return "l1_norm"
    case .sumOfSquares: return "sum_of_squares"
    case .normalizedDot: return "normalized_dot"
    case .dot: return "dot"
    case .projectOut: return "project_out"
    case .slerpBlend(let t): return "slerp_blend t=\(t)"
    case .wholeTensor(let k): return "whole_tensor " + k.base.identity
    case .store(let d): return "store \(d.rawValue)"
    case .copyBytes: return "copy_bytes"
    }
  }

  /// The operation's name in printed graphs (`merge graph`); free to change.
  public var name: String {
    switch self {
    case .wholeTensor(let k): return k.description
    default: return identity
    }
  }
}
