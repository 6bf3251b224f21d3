import MergeRecipe

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
///
/// Besides its type, scope, default and valid range, a parameter may carry the method's own
/// advice about values that are valid but probably not what the user meant (slerp's `t`
/// outside [0, 1]), or say that mergekit accepts it without using it (task_arithmetic's
/// `density`): the checker turns both into warnings at the value's location.
public struct ParameterSpec: Sendable {
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
  /// Why the method accepts the parameter but never reads it (a warning wherever it is set).
  public var unused: Diagnostic.Message?
  /// A warning about a valid value, or nil when the value raises no concern.
  public var advice: (@Sendable (Double) -> Diagnostic.Message?)?

  /// Creates a parameter description.
  public init(
    _ name: String, _ type: ParameterType, _ scope: ParameterScope, default defaultValue: Double?,
    required: Bool = false, range: ValueRange = .any, _ summary: String,
    unused: Diagnostic.Message? = nil, advice: (@Sendable (Double) -> Diagnostic.Message?)? = nil
  ) {
    self.name = name
    self.type = type
    self.scope = scope
    self.defaultValue = defaultValue
    self.isRequired = required
    self.validRange = range
    self.summary = summary
    self.unused = unused
    self.advice = advice
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

/// A merge method's interface: everything the checker, the resolver, `merge methods`, the
/// README table and the JSON Schema know about it.
public struct MethodSpec: Sendable {
  /// The name used in `merge_method`.
  public var name: String
  /// The human name.
  public var prettyName: String
  /// Its parameters, in the order help lists them.
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

  /// Creates a method description.
  public init(
    name: String, prettyName: String, parameters: [ParameterSpec], base: BasePolicy,
    minInputs: Int, maxInputs: Int? = nil, minNonBase: Int? = nil, maxNonBase: Int? = nil,
    summary: String, reference: String?
  ) {
    self.name = name
    self.prettyName = prettyName
    self.parameters = parameters
    self.base = base
    self.minInputs = minInputs
    self.maxInputs = maxInputs
    self.minNonBase = minNonBase
    self.maxNonBase = maxNonBase
    self.summary = summary
    self.reference = reference
  }

  /// The parameter named `name`.
  public func parameter(_ name: String) -> ParameterSpec? {
    parameters.first { $0.name == name }
  }
}
