#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// What a merge method's parameter holds.
public enum ParameterType: String, Sendable, Hashable {
  /// A real number.
  case float
  /// An integer.
  case int
  /// `true` or `false`.
  case bool
  /// A real number, or absent (passthrough's `scale`).
  case optionalFloat
}

/// Which inputs a parameter is bound to (mergekit's `ParameterScope`).
public enum ParameterScope: String, Sendable, Hashable {
  /// One value for the whole tensor (`lambda`, `t`); per-model settings are ignored.
  case shared
  /// One value per input model, the base model included.
  case input
  /// One value per input model other than the base model.
  case nonBase
}

/// The valid values of a numeric parameter.
public struct ValueRange: Sendable, Hashable {
  /// The lower bound, if any.
  public var lower: Double?
  /// Whether the lower bound itself is allowed.
  public var lowerClosed: Bool
  /// The upper bound, if any.
  public var upper: Double?
  /// Whether the upper bound itself is allowed.
  public var upperClosed: Bool

  /// Any finite value.
  public static let any = ValueRange(lower: nil, lowerClosed: true, upper: nil, upperClosed: true)
  /// `[0, ∞)`.
  public static let nonNegative = ValueRange(
    lower: 0, lowerClosed: true, upper: nil, upperClosed: true)
  /// `[0, 1]`.
  public static let unit = ValueRange(lower: 0, lowerClosed: true, upper: 1, upperClosed: true)
  /// `[0, 1)`.
  public static let unitOpenAbove = ValueRange(
    lower: 0, lowerClosed: true, upper: 1, upperClosed: false)

  /// Whether `x` lies in the range (NaN never does).
  public func contains(_ x: Double) -> Bool {
    guard x.isFinite else { return false }
    if let lower, lowerClosed ? x < lower : x <= lower { return false }
    if let upper, upperClosed ? x > upper : x >= upper { return false }
    return true
  }

  /// The range in interval notation, `[0, 1]`, `(0, 1)`, `[0, ∞)`.
  public var description: String {
    let lo = lower.map { (lowerClosed ? "[" : "(") + format($0) } ?? "(-∞"
    let hi = upper.map { format($0) + (upperClosed ? "]" : ")") } ?? "∞)"
    return lo + ", " + hi
  }
}

/// Formats a number the short way (`1`, `0.5`, `1e-05`).
func format(_ x: Double) -> String {
  guard x.isFinite else { return String(x) }
  if x == x.rounded(), abs(x) < 1e15 { return String(Int(x)) }
  // Round to 12 significant digits so that 0.1 + 0.2 prints as 0.3.
  let magnitude = (abs(x)).rounded(.down) == 0 ? 0 : Int(log10(abs(x)).rounded(.down))
  let scale = pow(10.0, Double(11 - magnitude))
  guard scale.isFinite, scale > 0 else { return String(x) }
  let rounded = (x * scale).rounded() / scale
  return String(rounded)
}

/// One parameter of a merge method.
public struct ParameterSpec: Sendable, Hashable {
  /// The name used in recipes.
  public var name: String
  /// What it holds.
  public var type: ParameterType
  /// Which inputs it binds to.
  public var scope: ParameterScope
  /// The default, or nil when the parameter is required (or optional without default).
  public var defaultValue: Double?
  /// Whether a recipe must give it.
  public var isRequired: Bool
  /// The values accepted.
  public var validRange: ValueRange
  /// One line for help and the README.
  public var summary: String

  /// Creates a parameter description.
  public init(
    _ name: String, _ type: ParameterType, _ scope: ParameterScope, default defaultValue: Double?,
    required: Bool = false, range: ValueRange = .any, _ summary: String
  ) {
    self.name = name
    self.type = type
    self.scope = scope
    self.defaultValue = defaultValue
    self.isRequired = required
    self.validRange = range
    self.summary = summary
  }

  /// The default as written in a recipe (`true`, `0.15`), or nil.
  public var defaultDescription: String? {
    guard let d = defaultValue else { return nil }
    if type == .bool { return d != 0 ? "true" : "false" }
    return format(d)
  }
}

/// Whether a method takes a base model (mergekit's `BasePolicy`).
public enum BasePolicy: String, Sendable, Hashable {
  /// A base model is optional; with one, the method works on task vectors.
  case optional
  /// A base model is required.
  case required
  /// A base model given in the recipe is merged as one more ordinary input.
  case ignored
}

/// Everything the compiler knows about a merge method's interface.
public struct MethodSpec: Sendable, Hashable {
  /// The name used in `merge_method`.
  public var name: String
  /// The human name.
  public var prettyName: String
  /// Its parameters.
  public var parameters: [ParameterSpec]
  /// Whether it takes a base model.
  public var base: BasePolicy
  /// Fewest inputs, base included.
  public var minInputs: Int
  /// Most inputs, base included.
  public var maxInputs: Int?
  /// Fewest inputs other than the base.
  public var minNonBase: Int?
  /// Most inputs other than the base.
  public var maxNonBase: Int?
  /// One line for help and the README.
  public var summary: String
  /// Where the method is described.
  public var reference: String?

  /// The parameter named `name`.
  public func parameter(_ name: String) -> ParameterSpec? {
    parameters.first { $0.name == name }
  }

  /// Whether the method works on task vectors and so needs a base model.
  public var isTaskArithmeticFamily: Bool {
    MethodCatalog.taskArithmeticFamily.contains(name)
  }
}

/// The merge methods of mergekit 0.1.5, with their parameters, defaults and input rules.
public enum MethodCatalog {
  /// Method names of the generalized task-arithmetic family.
  public static let taskArithmeticFamily: Set<String> = [
    "task_arithmetic", "ties", "dare_ties", "dare_linear", "breadcrumbs", "breadcrumbs_ties",
    "della", "della_linear",
  ]

  /// Every method, in the order the README lists them.
  public static let all: [MethodSpec] = [
    MethodSpec(
      name: "linear", prettyName: "Linear",
      parameters: [
        ParameterSpec(
          "weight", .float, .input, default: nil, required: true, "weight of each model"),
        ParameterSpec("normalize", .bool, .shared, default: 1, "divide by the sum of the weights"),
      ],
      base: .ignored, minInputs: 1, summary: "weighted average of the models",
      reference: "https://arxiv.org/abs/2203.05482"),
    taskArithmetic(
      "task_arithmetic", "Task Arithmetic", normalize: false, rescale: false,
      summary: "base + λ·Σ wᵢ·τᵢ", reference: "https://arxiv.org/abs/2212.04089"),
    taskArithmetic(
      "ties", "TIES", normalize: true, rescale: false, sparsify: .magnitude,
      summary: "keep each τ's largest entries, elect a sign per entry, average what agrees",
      reference: "https://arxiv.org/abs/2306.01708"),
    taskArithmetic(
      "dare_ties", "DARE TIES", normalize: false, rescale: true, sparsify: .random,
      summary: "drop τ entries at random and rescale, then TIES sign election",
      reference: "https://arxiv.org/abs/2311.03099"),
    taskArithmetic(
      "dare_linear", "Linear DARE", normalize: false, rescale: true, sparsify: .random,
      summary: "drop τ entries at random and rescale, then add",
      reference: "https://arxiv.org/abs/2311.03099"),
    taskArithmetic(
      "breadcrumbs", "Model Breadcrumbs", normalize: false, rescale: false,
      sparsify: .outliers,
      summary: "drop each τ's smallest entries and its largest outliers, then add",
      reference: "https://arxiv.org/abs/2312.06795"),
    taskArithmetic(
      "breadcrumbs_ties", "Model Breadcrumbs with TIES", normalize: false,
      rescale: false, sparsify: .outliers,
      summary: "breadcrumbs' outlier band, then TIES sign election",
      reference: "https://arxiv.org/abs/2312.06795"),
    taskArithmetic(
      "della", "DELLA", normalize: true, rescale: true, sparsify: .della,
      summary: "drop τ entries with probabilities by magnitude rank, then TIES sign election",
      reference: "https://arxiv.org/abs/2406.11617"),
    taskArithmetic(
      "della_linear", "Linear DELLA", normalize: false, rescale: true,
      sparsify: .della, summary: "DELLA's rank-based drops, then add",
      reference: "https://arxiv.org/abs/2406.11617"),
    MethodSpec(
      name: "slerp", prettyName: "SLERP",
      parameters: [
        ParameterSpec(
          "t", .float, .shared, default: nil, required: true,
          "interpolation factor: 0 gives the base model, 1 the other")
      ],
      base: .required, minInputs: 2, maxInputs: 2,
      summary: "spherical interpolation between the base and one other model",
      reference: "https://en.wikipedia.org/wiki/Slerp"),
    MethodSpec(
      name: "nuslerp", prettyName: "NuSLERP",
      parameters: [
        ParameterSpec(
          "weight", .float, .nonBase, default: nil, required: true,
          "relative weight of each of the two models"),
        ParameterSpec(
          "nuslerp_row_wise", .bool, .shared, default: 0,
          "interpolate row vectors instead of column vectors"),
        ParameterSpec(
          "nuslerp_flatten", .bool, .shared, default: 1,
          "interpolate the flattened tensors as single vectors"),
      ],
      base: .optional, minInputs: 1, minNonBase: 2, maxNonBase: 2,
      summary: "spherical interpolation of two models (or their task vectors, with a base)",
      reference: nil),
    MethodSpec(
      name: "multislerp", prettyName: "Multi-SLERP",
      parameters: [
        ParameterSpec(
          "weight", .float, .nonBase, default: nil, required: true, "weight of each model"),
        ParameterSpec(
          "normalize_weights", .bool, .shared, default: 1,
          "divide the weights by their sum"),
        ParameterSpec(
          "eps", .float, .shared, default: 1e-8, range: .nonNegative,
          "small constant for numerical stability"),
      ],
      base: .optional, minInputs: 1, minNonBase: 1,
      summary: "barycentric interpolation of any number of models on the hypersphere",
      reference: "https://goddard.blog/posts/multislerp-wow-what-a-cool-idea"),
    MethodSpec(
      name: "nearswap", prettyName: "NearSwap",
      parameters: [
        ParameterSpec(
          "t", .float, .shared, default: nil, required: true, range: .nonNegative,
          "similarity threshold: entries closer than t take the other model's value")
      ],
      base: .required, minInputs: 2, maxInputs: 2,
      summary: "take the other model's value where it is close to the base",
      reference: "https://huggingface.co/alchemonaut/QuartetAnemoi-70B-t0.0001"),
    MethodSpec(
      name: "model_stock", prettyName: "Model Stock",
      parameters: [
        ParameterSpec(
          "filter_wise", .bool, .shared, default: 0,
          "compute the interpolation ratio per row instead of per tensor")
      ],
      base: .required, minInputs: 3,
      summary: "interpolate between the base and the average of the models by their geometry",
      reference: "https://arxiv.org/abs/2403.19522"),
    MethodSpec(
      name: "karcher", prettyName: "Karcher Mean",
      parameters: [
        ParameterSpec(
          "max_iter", .int, .shared, default: 10, range: .nonNegative,
          "most iterations"),
        ParameterSpec(
          "tol", .float, .shared, default: 1e-5, range: .nonNegative,
          "convergence tolerance"),
      ],
      base: .ignored, minInputs: 1,
      summary: "Riemannian (Karcher) mean of the models on the hypersphere",
      reference: "https://arxiv.org/abs/2603.04972"),
    MethodSpec(
      name: "sce", prettyName: "SCE",
      parameters: [
        ParameterSpec(
          "int8_mask", .bool, .shared, default: 0, "store masks as int8 (no effect on results)"),
        ParameterSpec(
          "select_topk", .float, .shared, default: 1, range: .unit,
          "fraction of entries with the highest variance across models to keep"),
      ],
      base: .required, minInputs: 1,
      summary: "select by variance, weight by energy, erase sign conflicts",
      reference: "https://arxiv.org/abs/2408.07990"),
    MethodSpec(
      name: "arcee_fusion", prettyName: "Arcee Fusion",
      parameters: [],
      base: .required, minInputs: 2, maxInputs: 2,
      summary: "take the other model's changes where their KL-weighted importance is high",
      reference: "https://arcee.ai"),
    MethodSpec(
      name: "ram", prettyName: "Reinforced Agent Merging",
      parameters: [
        ParameterSpec(
          "epsilon", .float, .shared, default: 1e-5, range: .nonNegative,
          "task-vector entries at most this large count as unchanged")
      ],
      base: .required, minInputs: 1,
      summary: "keep unique updates whole, average overlapping ones",
      reference: "https://arxiv.org/abs/2601.13572"),
    MethodSpec(
      name: "ramplus_tl", prettyName: "Reinforced Agent Merging Plus (Tensor-Local)",
      parameters: [
        ParameterSpec(
          "r", .float, .shared, default: 0.1, range: .nonNegative,
          "strength of the rescaling of unique updates"),
        ParameterSpec(
          "alpha", .float, .shared, default: 0.2, range: .nonNegative,
          "cap on the overlap ratio"),
        ParameterSpec(
          "epsilon", .float, .shared, default: 1e-5, range: .nonNegative,
          "task-vector entries at most this large count as unchanged"),
      ],
      base: .required, minInputs: 1,
      summary: "RAM with unique updates rescaled by the tensor's overlap ratio",
      reference: "https://arxiv.org/abs/2601.13572"),
    MethodSpec(
      name: "passthrough", prettyName: "Passthrough",
      parameters: [
        ParameterSpec("scale", .optionalFloat, .input, default: nil, "multiply the tensor by this")
      ],
      base: .ignored, minInputs: 1, maxInputs: 1,
      summary: "copy tensors from a single model; with slices, stack layers (frankenmerges)",
      reference: nil),
  ]

  /// Every method by name.
  public static let byName: [String: MethodSpec] = Dictionary(
    uniqueKeysWithValues: all.map { ($0.name, $0) })

  /// The method named `name`.
  public static func method(_ name: String) -> MethodSpec? { byName[name] }

  /// Every parameter name any method takes.
  public static var allParameterNames: Set<String> {
    Set(all.flatMap { $0.parameters.map(\.name) })
  }

  /// The methods that take a parameter named `name`.
  public static func methods(taking name: String) -> [String] {
    all.filter { $0.parameter(name) != nil }.map(\.name)
  }

  enum Sparsification { case none, magnitude, random, outliers, della }

  private static func taskArithmetic(
    _ name: String, _ pretty: String, normalize: Bool, rescale: Bool,
    sparsify: Sparsification = .none, summary: String, reference: String
  ) -> MethodSpec {
    var params = [
      ParameterSpec(
        "int8_mask", .bool, .shared, default: 0, "store masks as int8 (no effect on results)"),
      ParameterSpec(
        "normalize", .bool, .shared, default: normalize ? 1 : 0,
        "divide the merged task vector by the sum of the weights that contributed"),
      ParameterSpec(
        "rescale", .bool, .shared, default: rescale ? 1 : 0,
        "rescale each sparsified task vector to its original L1 norm"),
      ParameterSpec("lambda", .float, .shared, default: 1, "scale of the merged task vector"),
      ParameterSpec(
        "weight", .float, .nonBase, default: nil, required: true,
        "weight of each model's task vector"),
      ParameterSpec(
        "density", .float, .nonBase, default: 1, range: .unit,
        "fraction of each task vector's entries to keep"),
    ]
    if sparsify == .outliers {
      params.append(
        ParameterSpec(
          "gamma", .float, .nonBase, default: 0.01, range: .unit,
          "fraction of the largest entries to drop as outliers"))
    }
    if sparsify == .della {
      params.append(
        ParameterSpec(
          "epsilon", .float, .nonBase, default: 0.15, range: .unitOpenAbove,
          "spread of keep probabilities around the density, by magnitude rank"))
    }
    return MethodSpec(
      name: name, prettyName: pretty, parameters: params, base: .required, minInputs: 1,
      summary: summary, reference: reference)
  }
}
