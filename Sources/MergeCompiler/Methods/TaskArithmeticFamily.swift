import MergeRecipe

/// How a method of the task-arithmetic family thins each task vector before adding it.
enum Sparsification: Sendable {
  /// Every entry is kept.
  case none
  /// The `density` fraction of largest magnitudes (TIES).
  case magnitude
  /// Each entry with probability `density` (DARE).
  case random
  /// A band of ascending magnitude ranks, dropping the `gamma` largest as outliers
  /// (breadcrumbs).
  case outliers
  /// Each entry with a probability by its magnitude rank in its row (DELLA).
  case della
}

/// mergekit's `GeneralizedTaskArithmeticMerge`, the family of eight methods that differ only in
/// how they sparsify task vectors and whether they elect signs: task vectors `τᵢ = xᵢ − base`,
/// optional sparsification (with L1 rescaling), weights, optional TIES sign consensus,
/// normalization, λ, then the base added back.
protocol GeneralizedTaskArithmetic: MergeMethod {
  /// How each task vector is sparsified.
  static var sparsification: Sparsification { get }
  /// Whether signs are elected per entry (TIES' consensus) before the weighted sum.
  static var electsSigns: Bool { get }
}

// MARK: - The eight methods

/// Task arithmetic: `base + λ·Σ wᵢ·τᵢ`.
public enum TaskArithmetic: GeneralizedTaskArithmetic {
  static let sparsification = Sparsification.none
  static let electsSigns = false
  public static let spec = familySpec(
    name: "task_arithmetic", prettyName: "Task Arithmetic", normalize: false, rescale: false,
    summary: "base + λ·Σ wᵢ·τᵢ", reference: "https://arxiv.org/abs/2212.04089")
}

/// TIES: trim each τ to its largest entries, elect a sign per entry, average what agrees.
public enum Ties: GeneralizedTaskArithmetic {
  static let sparsification = Sparsification.magnitude
  static let electsSigns = true
  public static let spec = familySpec(
    name: "ties", prettyName: "TIES", normalize: true, rescale: false,
    summary: "keep each τ's largest entries, elect a sign per entry, average what agrees",
    reference: "https://arxiv.org/abs/2306.01708")
}

/// DARE with TIES' sign election.
public enum DareTies: GeneralizedTaskArithmetic {
  static let sparsification = Sparsification.random
  static let electsSigns = true
  public static let spec = familySpec(
    name: "dare_ties", prettyName: "DARE TIES", normalize: false, rescale: true,
    summary: "drop τ entries at random and rescale, then TIES sign election",
    reference: "https://arxiv.org/abs/2311.03099")
}

/// DARE: drop τ entries at random, rescale, add.
public enum DareLinear: GeneralizedTaskArithmetic {
  static let sparsification = Sparsification.random
  static let electsSigns = false
  public static let spec = familySpec(
    name: "dare_linear", prettyName: "Linear DARE", normalize: false, rescale: true,
    summary: "drop τ entries at random and rescale, then add",
    reference: "https://arxiv.org/abs/2311.03099")
}

/// Model breadcrumbs: drop each τ's smallest entries and its largest outliers, add.
public enum Breadcrumbs: GeneralizedTaskArithmetic {
  static let sparsification = Sparsification.outliers
  static let electsSigns = false
  public static let spec = familySpec(
    name: "breadcrumbs", prettyName: "Model Breadcrumbs", normalize: false, rescale: false,
    summary: "drop each τ's smallest entries and its largest outliers, then add",
    reference: "https://arxiv.org/abs/2312.06795")
}

/// Breadcrumbs' band with TIES' sign election.
public enum BreadcrumbsTies: GeneralizedTaskArithmetic {
  static let sparsification = Sparsification.outliers
  static let electsSigns = true
  public static let spec = familySpec(
    name: "breadcrumbs_ties", prettyName: "Model Breadcrumbs with TIES", normalize: false,
    rescale: false, summary: "breadcrumbs' outlier band, then TIES sign election",
    reference: "https://arxiv.org/abs/2312.06795")
}

/// DELLA: drops by magnitude rank, TIES' sign election.
public enum Della: GeneralizedTaskArithmetic {
  static let sparsification = Sparsification.della
  static let electsSigns = true
  public static let spec = familySpec(
    name: "della", prettyName: "DELLA", normalize: true, rescale: true,
    summary: "drop τ entries with probabilities by magnitude rank, then TIES sign election",
    reference: "https://arxiv.org/abs/2406.11617")
}

/// DELLA's drops, then a plain sum.
public enum DellaLinear: GeneralizedTaskArithmetic {
  static let sparsification = Sparsification.della
  static let electsSigns = false
  public static let spec = familySpec(
    name: "della_linear", prettyName: "Linear DELLA", normalize: false, rescale: true,
    summary: "DELLA's rank-based drops, then add", reference: "https://arxiv.org/abs/2406.11617")
}

// MARK: - Parameters

/// The family's parameters; a member's spec adjusts defaults and says which have no effect.
enum TaskArithmeticParameters {
  static let int8Mask = ParameterSpec(
    "int8_mask", .bool, .shared, default: 0, "store masks as int8 (no effect on results)")
  static let normalize = ParameterSpec(
    "normalize", .bool, .shared, default: 0,
    "divide the merged task vector by the sum of the weights that contributed")
  static let rescale = ParameterSpec(
    "rescale", .bool, .shared, default: 0,
    "rescale each sparsified task vector to its original L1 norm")
  static let lambda = ParameterSpec(
    "lambda", .float, .shared, default: 1, "scale of the merged task vector")
  static let weight = ParameterSpec(
    "weight", .float, .nonBase, default: nil, required: true, "weight of each model's task vector")
  static let density = ParameterSpec(
    "density", .float, .nonBase, default: 1, range: .unit,
    "fraction of each task vector's entries to keep", advice: { $0 == 0 ? .zeroDensity : nil })
  static let disjoint = ParameterSpec(
    "disjoint", .bool, .shared, default: 0,
    "merge's own: each entry keeps only the task vector of largest magnitude there (after sparsification, before weighting), so no two vectors change one entry",
    advice: { $0 != 0 ? .mergeExtension("disjoint") : nil })
  static let orthogonalize = ParameterSpec(
    "orthogonalize", .bool, .shared, default: 0,
    "merge's own: Gram–Schmidt over each tensor's task vectors in recipe order (after sparsification, before weighting), so the vectors added are orthogonal",
    advice: { $0 != 0 ? .mergeExtension("orthogonalize") : nil })
  static let gamma = ParameterSpec(
    "gamma", .float, .nonBase, default: 0.01, range: .unit,
    "fraction of the largest entries to drop as outliers")
  static let epsilon = ParameterSpec(
    "epsilon", .float, .nonBase, default: 0.15, range: .unitOpenAbove,
    "spread of keep probabilities around the density, by magnitude rank")
}

extension ParameterSpec {
  /// The same parameter with default `value` (`true` is 1).
  func defaulting(to value: Bool) -> ParameterSpec {
    var p = self
    p.defaultValue = value ? 1 : 0
    return p
  }

  /// The same parameter, accepted without effect: a warning wherever it is set.
  func unused(_ why: Diagnostic.Message) -> ParameterSpec {
    var p = self
    p.unused = why
    p.advice = nil
    return p
  }
}

extension GeneralizedTaskArithmetic {
  typealias P = TaskArithmeticParameters

  /// The spec of a family member: the family's parameters, `gamma` for breadcrumbs and
  /// `epsilon` for DELLA; a required base model.
  static func familySpec(
    name: String, prettyName: String, normalize: Bool, rescale: Bool, summary: String,
    reference: String
  ) -> MethodSpec {
    var parameters = [
      P.int8Mask, P.normalize.defaulting(to: normalize), P.rescale.defaulting(to: rescale),
      P.lambda, P.weight, P.density, P.orthogonalize, P.disjoint,
    ]
    if sparsification == .none {
      parameters[2] = parameters[2].unused(.noSparsification(P.rescale.name))
      parameters[5] = parameters[5].unused(.noSparsification(P.density.name))
    }
    if sparsification == .outliers { parameters.append(P.gamma) }
    if sparsification == .della { parameters.append(P.epsilon) }
    return MethodSpec(
      name: name, prettyName: prettyName, parameters: parameters, base: .required,
      minInputs: 1, summary: summary, reference: reference)
  }

  /// DELLA needs `density ± epsilon` inside (0, 1) wherever the density is in (0, 1).
  public static func validate(_ tensor: TensorPlan) -> [Diagnostic] {
    guard sparsification == .della else { return [] }
    var found: [Diagnostic] = []
    for i in tensor.nonBaseInputs {
      guard let density = tensor.perInput[i][P.density.name],
        let epsilon = tensor.perInput[i][P.epsilon.name],
        let d = density.value.number, let e = epsilon.value.number,
        d > 0 && d < 1 && !(d - e > 0 && d + e < 1)
      else { continue }
      var notes: [Diagnostic.Note] = []
      if let at = density.origin, epsilon.origin != nil {
        notes.append(Diagnostic.Note("density \(format(d)) is set here", at: at))
      }
      found.append(
        Diagnostic(
          .dellaEpsilon(density: d, epsilon: e), at: epsilon.origin ?? density.origin,
          notes: notes))
    }
    return found
  }

  public static func lower(
    _ tensor: TensorPlan, loads: [NodeID], seed: UInt64, into b: inout GraphBuilder
  ) throws(LoweringError) -> NodeID {
    let base = loads[try tensor.requireBase(for: spec)]
    let others = tensor.nonBaseInputs
    if others.isEmpty { return base }
    var kept: [NodeID] = []
    var weights: [Float] = []
    for i in others {
      weights.append(Float(try tensor.number(P.weight, input: i)))
      let tau = b.node(.taskVector, loads[i], base)
      kept.append(try sparsified(tau, of: tensor, input: i, seed: seed, &b))
    }
    if try tensor.flag(P.orthogonalize), kept.count > 1 {
      // Modified Gram–Schmidt: each vector loses its components along the ones before it.
      var basis: [(vector: NodeID, squares: NodeID)] = []
      for (k, original) in kept.enumerated() {
        var v = original
        for u in basis {
          v = b.node(.projectOut, v, u.vector, b.node(.dot, v, u.vector), u.squares)
        }
        kept[k] = v
        basis.append((v, b.node(.sumOfSquares, v)))
      }
    }
    if try tensor.flag(P.disjoint), kept.count > 1 {
      let all = kept
      kept = all.indices.map { b.node(.disjoint(position: $0), all) }
    }
    let deltas = zip(kept, weights).map { b.node(.scale($1), $0) }
    let normalize = try tensor.flag(P.normalize)
    var mixed: NodeID
    if electsSigns {
      mixed = b.node(.signConsensus(weights: weights, normalize: normalize), deltas)
    } else {
      mixed = deltas.count == 1 ? deltas[0] : b.node(.sum, deltas)
      if normalize {
        // torch sums the weights as a small f32 tensor, in order.
        let total = weights.reduce(Float(0), +)
        mixed = b.node(.divide(abs(total) < 1e-8 ? 1 : total), mixed)
      }
    }
    let lambda = try tensor.number(P.lambda)
    if lambda != 1 { mixed = b.node(.scale(Float(lambda)), mixed) }
    return b.node(.add, base, mixed)
  }

  /// Task vector `tau` of input `input` after this method's sparsification (and L1 rescaling
  /// when `rescale` is on and anything was dropped); `tau` itself at density 1.
  static func sparsified(
    _ tau: NodeID, of tensor: TensorPlan, input i: Int, seed: UInt64, _ b: inout GraphBuilder
  ) throws(LoweringError) -> NodeID {
    let density = try tensor.number(P.density, input: i)
    guard density < 1 else { return tau }
    let n = tensor.count
    let delta: NodeID
    switch sparsification {
    case .none:
      return tau
    case .magnitude:
      let k = density <= 0 ? 0 : max(1, Int(density * Double(n)))
      let cut = b.node(.sortPrefix(rank: k, descending: true), tau)
      delta = b.node(.keepTop, tau, cut)
    case .random:
      delta = b.node(
        .keepRandom(density: Float(density), stream: RandomStream.key(seed, tensor.name, i)), tau)
    case .outliers:
      let gamma = try tensor.number(P.gamma, input: i)
      let target = Int(density * Double(n))
      let bottom = max(0, n - target - Int(gamma * Double(n)))
      let low = b.node(.sortPrefix(rank: bottom, descending: false), tau)
      let high = b.node(.sortPrefix(rank: bottom + target, descending: false), tau)
      delta = b.node(.keepBand, tau, low, high)
    case .della:
      if density <= 0 {
        let nothing = b.node(.sortPrefix(rank: 0, descending: true), tau)
        delta = b.node(.keepTop, tau, nothing)
      } else {
        let epsilon = try tensor.number(P.epsilon, input: i)
        let shape = tensor.shape
        let columns = shape.count >= 2 ? shape.dropFirst().reduce(1, *) : max(1, n)
        delta = b.node(
          .keepByRank(
            density: Float(density), epsilon: Float(epsilon),
            stream: RandomStream.key(seed, tensor.name, i), columns: columns),
          tau)
      }
    }
    guard try tensor.flag(P.rescale), delta != tau else {
      return delta
    }
    let before = b.node(.l1Norm, tau)
    let after = b.node(.l1Norm, delta)
    return b.node(.rescaleL1, delta, before, after)
  }
}

extension Diagnostic.Message {
  fileprivate static func mergeExtension(_ name: String) -> Self {
    Self(
      "merge-extension", .warning,
      "'\(name)' is merge's own, not mergekit's: mergekit ignores it, so this recipe gives another model there"
    )
  }

  fileprivate static let zeroDensity = Self(
    "zero-density", .warning,
    "density 0 keeps nothing of this task vector; the model contributes nothing where it applies")

  fileprivate static func noSparsification(_ name: String) -> Self {
    Self(
      "unused-parameter", .warning,
      "'\(name)' has no effect: task_arithmetic keeps every entry of each task vector; use ties, dare_linear or breadcrumbs to sparsify"
    )
  }

  fileprivate static func dellaEpsilon(density: Double, epsilon: Double) -> Self {
    Self(
      "della-epsilon",
      "DELLA needs density ± epsilon inside (0, 1), but density \(format(density)) with epsilon \(format(epsilon)) gives [\(format(density - epsilon)), \(format(density + epsilon))]"
    )
  }
}
