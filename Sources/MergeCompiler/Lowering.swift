import MergeModel
import MergeRecipe

/// Why a tensor could not be lowered.
public struct LoweringError: Error, Sendable, CustomStringConvertible {
  /// The tensor.
  public var tensor: String
  /// What is wrong.
  public var reason: String
  /// Where in the recipe the tensor's inputs were chosen.
  public var origin: SourceRange?

  public var description: String { "tensor '\(tensor)': \(reason)" }

  /// Creates an error.
  public init(tensor: String, reason: String, origin: SourceRange?) {
    self.tensor = tensor
    self.reason = reason
    self.origin = origin
  }
}

/// Lowers each method to a ``TensorGraph`` with mergekit 0.1.5's numerics.
public enum Lowering {
  /// The graph that computes `plan`'s tensor; `seed` keys the random methods' generator.
  public static func lower(_ plan: TensorPlan, method: MethodSpec, seed: UInt64)
    throws(LoweringError) -> TensorGraph
  {
    var b = GraphBuilder()
    let loads = plan.inputs.indices.map { b.node(.load(input: $0)) }
    if !(plan.inputs.first?.info.dtype.isFloatingPoint ?? true) {
      let out = b.node(.copyBytes, loads[0])
      return b.graph(output: out, plan: plan)
    }
    let value: NodeID
    switch method.name {
    case "linear":
      value = try linear(plan, loads, &b)
    case "passthrough":
      value = passthrough(plan, loads, &b)
    case _ where method.isTaskArithmeticFamily:
      value = try taskArithmetic(plan, method: method.name, loads, &b, seed: seed)
    case "slerp":
      value = try slerp(plan, loads, &b)
    case _ where wholeTensorMethods.contains(method.name):
      value = try wholeTensor(plan, method: method.name, loads, &b)
    default:
      throw LoweringError(
        tensor: plan.name, reason: "merge method '\(method.name)' cannot be run yet",
        origin: plan.origin)
    }
    let out = b.node(.store(plan.outputDType), value)
    return b.graph(output: out, plan: plan)
  }

  /// Methods evaluated by whole-tensor kernels.
  public static let wholeTensorMethods: Set<String> = [
    "nuslerp", "multislerp", "karcher", "model_stock", "nearswap", "sce", "arcee_fusion",
    "ram", "ramplus_tl",
  ]

  /// mergekit's `slerp` of the base (`a`) and the other model (`b`) over the flattened tensor.
  ///
  /// Two sums of squares, the cosine of the normalized tensors (a second pass, as it
  /// needs the norms), then one elementwise pass. No tensor is held whole.
  static func slerp(_ plan: TensorPlan, _ loads: [NodeID], _ b: inout GraphBuilder)
    throws(LoweringError) -> NodeID
  {
    guard let baseIndex = plan.baseIndex, loads.count == 2 else {
      throw LoweringError(
        tensor: plan.name, reason: "slerp needs the base and one other model", origin: plan.origin)
    }
    let a = loads[baseIndex]
    let other = loads[1 - baseIndex]
    let squaresA = b.node(.sumOfSquares, a)
    let squaresB = b.node(.sumOfSquares, other)
    let cosine = b.node(.normalizedDot, a, other, squaresA, squaresB)
    let t = Float(plan.shared["t"]?.number ?? 0.5)
    return b.node(.slerpBlend(t: t), a, other, squaresA, squaresB, cosine)
  }

  /// The whole-tensor kernel node of a geometric or statistical method: inputs ordered base
  /// first (when the method has one), then the other models in recipe order.
  static func wholeTensor(
    _ plan: TensorPlan, method: String, _ loads: [NodeID], _ b: inout GraphBuilder
  ) throws(LoweringError) -> NodeID {
    let baseIndex = plan.baseIndex
    let others = loads.indices.filter { $0 != baseIndex }
    var ordered = others.map { loads[$0] }
    if let baseIndex { ordered.insert(loads[baseIndex], at: 0) }
    func shared(_ name: String) -> Double? { plan.shared[name]?.number }
    func requireBase() throws(LoweringError) {
      if baseIndex == nil {
        throw LoweringError(
          tensor: plan.name, reason: "\(method) needs the base model's tensor", origin: plan.origin)
      }
    }
    let kernel: WholeTensorMethod
    switch method {
    case "nuslerp":
      guard others.count == 2 else {
        throw LoweringError(
          tensor: plan.name, reason: "nuslerp needs two models besides the base",
          origin: plan.origin)
      }
      let w0 = number(plan, others[0], "weight") ?? 0
      let w1 = number(plan, others[1], "weight") ?? 0
      let total = w0 + w1
      let t = abs(total) < 1e-6 ? 0.5 : w1 / total
      kernel = .nuslerp(
        t: Float(t), rowWise: plan.shared["nuslerp_row_wise"]?.bool ?? false,
        flatten: plan.shared["nuslerp_flatten"]?.bool ?? true, hasBase: baseIndex != nil)
    case "multislerp":
      kernel = .multislerp(
        weights: others.map { Float(number(plan, $0, "weight") ?? 1) },
        normalizeWeights: plan.shared["normalize_weights"]?.bool ?? true,
        eps: Float(shared("eps") ?? 1e-8), hasBase: baseIndex != nil)
    case "karcher":
      kernel = .karcher(
        maxIterations: Int(shared("max_iter") ?? 10), tolerance: shared("tol") ?? 1e-5)
    case "model_stock":
      try requireBase()
      kernel = .modelStock(filterWise: plan.shared["filter_wise"]?.bool ?? false)
    case "nearswap":
      try requireBase()
      kernel = .nearswap(t: Float(shared("t") ?? 0))
    case "sce":
      try requireBase()
      kernel = .sce(selectTopK: shared("select_topk") ?? 1)
    case "arcee_fusion":
      try requireBase()
      kernel = .arceeFusion
    case "ram":
      try requireBase()
      kernel = .ram(epsilon: Float(shared("epsilon") ?? 1e-5))
    default:
      try requireBase()
      kernel = .ramPlus(
        r: Float(shared("r") ?? 0.1), alpha: Float(shared("alpha") ?? 0.2),
        epsilon: Float(shared("epsilon") ?? 1e-5))
    }
    return b.node(.wholeTensor(kernel), ordered)
  }

  /// The f32 sum of `values` in order, as torch sums a small f32 tensor.
  static func f32Sum(_ values: [Float]) -> Float {
    values.reduce(Float(0), +)
  }

  static func number(_ plan: TensorPlan, _ input: Int, _ name: String) -> Double? {
    plan.perInput[input][name]?.number
  }

  // MARK: linear

  /// `Σ wᵢ·xᵢ`, divided by `Σ wᵢ` when `normalize` (the default); f32 throughout.
  static func linear(_ plan: TensorPlan, _ loads: [NodeID], _ b: inout GraphBuilder)
    throws(LoweringError) -> NodeID
  {
    var weights: [Float] = []
    for i in loads.indices {
      guard let w = number(plan, i, "weight") else {
        throw LoweringError(
          tensor: plan.name, reason: "no weight for input \(i)", origin: plan.origin)
      }
      weights.append(Float(w))
    }
    var value = b.node(.weightedSum(weights: weights), loads)
    if plan.shared["normalize"]?.bool ?? true {
      value = b.node(.divide(f32Sum(weights)), value)
    }
    return value
  }

  // MARK: passthrough

  static func passthrough(_ plan: TensorPlan, _ loads: [NodeID], _ b: inout GraphBuilder) -> NodeID
  {
    if case .number(let s)? = plan.perInput[0]["scale"] {
      return b.node(.scale(Float(s)), loads[0])
    }
    return loads[0]
  }

  // MARK: task arithmetic family

  enum Sparsification { case none, magnitude, random, outliers, della }

  /// mergekit's `GeneralizedTaskArithmeticMerge`: task vectors, optional sparsification (with
  /// L1 rescaling), weights, optional TIES sign consensus, normalization, λ, plus the base.
  static func taskArithmetic(
    _ plan: TensorPlan, method: String, _ loads: [NodeID], _ b: inout GraphBuilder, seed: UInt64
  ) throws(LoweringError) -> NodeID {
    guard let baseIndex = plan.baseIndex else {
      throw LoweringError(
        tensor: plan.name, reason: "\(method) needs the base model's tensor", origin: plan.origin)
    }
    let base = loads[baseIndex]
    let others = loads.indices.filter { $0 != baseIndex }
    if others.isEmpty { return base }
    let sparsification: Sparsification
    switch method {
    case "ties": sparsification = .magnitude
    case "dare_ties", "dare_linear": sparsification = .random
    case "breadcrumbs", "breadcrumbs_ties": sparsification = .outliers
    case "della", "della_linear": sparsification = .della
    default: sparsification = .none
    }
    let consensus = ["ties", "dare_ties", "breadcrumbs_ties", "della"].contains(method)
    let rescale = plan.shared["rescale"]?.bool ?? false
    let normalize = plan.shared["normalize"]?.bool ?? false
    let lambda = plan.shared["lambda"]?.number ?? 1
    let n = plan.count
    var deltas: [NodeID] = []
    var weights: [Float] = []
    for i in others {
      guard let w = number(plan, i, "weight") else {
        throw LoweringError(
          tensor: plan.name, reason: "no weight for input \(i)", origin: plan.origin)
      }
      let density = number(plan, i, "density") ?? 1
      let tau = b.node(.taskVector, loads[i], base)
      var delta = tau
      if density < 1 {
        switch sparsification {
        case .none:
          break
        case .magnitude:
          let k = density <= 0 ? 0 : max(1, Int(density * Double(n)))
          let cut = b.node(.sortPrefix(rank: k, descending: true), tau)
          delta = b.node(.keepTop, tau, cut)
        case .random:
          delta = b.node(
            .keepRandom(density: Float(density), stream: stream(seed, plan.name, i)), tau)
        case .outliers:
          let gamma = number(plan, i, "gamma") ?? 0.01
          let target = Int(density * Double(n))
          let top = Int(gamma * Double(n))
          let bottom = max(0, n - target - top)
          let low = b.node(.sortPrefix(rank: bottom, descending: false), tau)
          let high = b.node(.sortPrefix(rank: bottom + target, descending: false), tau)
          delta = b.node(.keepBand, tau, low, high)
        case .della:
          let epsilon = number(plan, i, "epsilon") ?? 0.15
          if density <= 0 {
            let cut = b.node(.sortPrefix(rank: 0, descending: true), tau)
            delta = b.node(.keepTop, tau, cut)
          } else {
            guard density - epsilon > 0 && density + epsilon < 1 else {
              throw LoweringError(
                tensor: plan.name,
                reason:
                  "DELLA needs density ± epsilon inside (0, 1), found density \(density) and epsilon \(epsilon)",
                origin: plan.origin)
            }
            let columns = plan.shape.count >= 2 ? plan.shape.dropFirst().reduce(1, *) : max(1, n)
            delta = b.node(
              .keepByRank(
                density: Float(density), epsilon: Float(epsilon),
                stream: stream(seed, plan.name, i), columns: columns),
              tau)
          }
        }
        if rescale && sparsification != .none && delta != tau {
          let before = b.node(.l1Norm, tau)
          let after = b.node(.l1Norm, delta)
          delta = b.node(.rescaleL1, delta, before, after)
        }
      }
      deltas.append(b.node(.scale(Float(w)), delta))
      weights.append(Float(w))
    }
    var mixed: NodeID
    if consensus {
      mixed = b.node(.signConsensus(weights: weights, normalize: normalize), deltas)
    } else {
      mixed = deltas.count == 1 ? deltas[0] : b.node(.sum, deltas)
      if normalize {
        var divisor = f32Sum(weights)
        if abs(divisor) < 1e-8 { divisor = 1 }
        mixed = b.node(.divide(divisor), mixed)
      }
    }
    if lambda != 1 { mixed = b.node(.scale(Float(lambda)), mixed) }
    return b.node(.add, base, mixed)
  }

  /// The random stream of input `input` of tensor `tensor`: a 64-bit key from the seed, the
  /// tensor's name (FNV-1a) and the input's position, mixed by SplitMix64's finalizer.
  public static func stream(_ seed: UInt64, _ tensor: String, _ input: Int) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in tensor.utf8 {
      h ^= UInt64(byte)
      h = h &* 0x0000_0100_0000_01b3
    }
    return mix(mix(seed ^ 0x6d65_7267_6521) ^ mix(h) ^ mix(UInt64(input) &+ 0x9E37_79B9_7F4A_7C15))
  }

  /// SplitMix64's finalizer.
  @inlinable
  public static func mix(_ x: UInt64) -> UInt64 {
    var z = x
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
