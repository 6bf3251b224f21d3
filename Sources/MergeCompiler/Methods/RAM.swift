/// mergekit's Reinforced Agent Merging: entries changed (|τ| > ε) by one model are kept whole,
/// entries changed by several are averaged over them.
public enum RAM: WholeTensorMethod {
  static let epsilon = ParameterSpec(
    "epsilon", .float, .shared, default: 1e-5, range: .nonNegative,
    "task-vector entries at most this large count as unchanged")

  public static let spec = MethodSpec(
    name: "ram", prettyName: "Reinforced Agent Merging", parameters: [epsilon], base: .required,
    minInputs: 1, summary: "keep unique updates whole, average overlapping ones",
    reference: "https://arxiv.org/abs/2601.13572")

  static func kernel(for tensor: TensorPlan) throws(LoweringError) -> RAMKernel {
    RAMKernel(epsilon: Float(try tensor.number(epsilon)), plus: nil)
  }
}

/// mergekit's RAM+ (tensor-local): RAM with each model's unique updates scaled by
/// `1 + r·clamp(shared/unique, 0, α)`.
public enum RAMPlusTL: WholeTensorMethod {
  static let r = ParameterSpec(
    "r", .float, .shared, default: 0.1, range: .nonNegative,
    "strength of the rescaling of unique updates")
  static let alpha = ParameterSpec(
    "alpha", .float, .shared, default: 0.2, range: .nonNegative, "cap on the overlap ratio")

  public static let spec = MethodSpec(
    name: "ramplus_tl", prettyName: "Reinforced Agent Merging Plus (Tensor-Local)",
    parameters: [r, alpha, RAM.epsilon], base: .required, minInputs: 1,
    summary: "RAM with unique updates rescaled by the tensor's overlap ratio",
    reference: "https://arxiv.org/abs/2601.13572")

  static func kernel(for tensor: TensorPlan) throws(LoweringError) -> RAMKernel {
    RAMKernel(
      epsilon: Float(try tensor.number(RAM.epsilon)),
      plus: RAMKernel.Plus(r: Float(try tensor.number(r)), alpha: Float(try tensor.number(alpha))))
  }
}

/// The kernel of RAM and RAM+; inputs: base, models.
struct RAMKernel: WholeTensorKernel {
  /// RAM+'s rescaling of unique updates.
  struct Plus: Hashable {
    var r: Float
    var alpha: Float
  }

  var epsilon: Float
  var plus: Plus?

  var cost: KernelCost { KernelCost(weight: plus == nil ? 2 : 3, bytesPerInput: 4, bytes: 8) }

  /// f32 throughout, as in mergekit.
  func callAsFunction(_ inputs: [[Float]], shape: [Int]) -> [Float] {
    let (base, tvs) = WholeTensorMath.taskVectors(inputs)
    if tvs.isEmpty { return base }
    let n = base.count
    var counts = [Int](repeating: 0, count: n)
    for tv in tvs {
      for k in 0..<n where abs(tv[k]) > epsilon { counts[k] += 1 }
    }
    let lambdas = tvs.map { lambda($0, counts: counts) }
    return (0..<n).map { k in
      var merged: Float = 0
      for (i, tv) in tvs.enumerated() {
        let z: Float = abs(tv[k]) > epsilon ? tv[k] : 0
        let unique: Float = counts[k] == 1 ? 1 : 0
        let overlap: Float = counts[k] > 1 ? 1 : 0
        let term: Float = plus == nil ? z * unique : z * unique * lambdas[i]
        merged += term + z * overlap / Float(max(counts[k], 1))
      }
      return base[k] + merged
    }
  }

  /// RAM+'s scale of one task vector's unique updates (1 for RAM).
  private func lambda(_ tv: [Float], counts: [Int]) -> Float {
    guard let plus else { return 1 }
    var shared = 0
    var unique = 0
    for k in tv.indices where abs(tv[k]) > epsilon {
      if counts[k] > 1 { shared += 1 }
      if counts[k] == 1 { unique += 1 }
    }
    let rho = Float(shared) / max(Float(unique), epsilon)
    return 1 + plus.r * min(plus.alpha, max(0, rho))
  }
}
