import MergeRecipe

/// A parameter's value for one tensor.
public enum ParameterValue: Sendable, Hashable, CustomStringConvertible {
  /// A number (parameters of type float and int).
  case number(Double)
  /// A Boolean.
  case bool(Bool)
  /// Deliberately absent (passthrough's `scale` when not set).
  case none

  /// The value as a number (`true` is 1).
  public var number: Double? {
    switch self {
    case .number(let d): return d
    case .bool(let b): return b ? 1 : 0
    case .none: return nil
    }
  }

  /// The value as a Boolean (a number is true when nonzero).
  public var bool: Bool {
    switch self {
    case .bool(let b): return b
    case .number(let d): return d != 0
    case .none: return false
    }
  }

  public var description: String {
    switch self {
    case .number(let d): return format(d)
    case .bool(let b): return b ? "true" : "false"
    case .none: return "none"
    }
  }
}

/// A parameter's value for one tensor, and the recipe text that set it.
public struct BoundParameter: Sendable, Hashable {
  /// The value.
  public var value: ParameterValue
  /// The scalar, list or `{filter, value}` entry that gave the value; nil for the default.
  public var origin: SourceRange?

  /// A value set at `origin` (nil: the default).
  public init(_ value: ParameterValue, origin: SourceRange?) {
    self.value = value
    self.origin = origin
  }
}

/// Evaluates parameter settings for one tensor, exactly as mergekit 0.1.5's
/// `evaluate_setting` and `resolve_parameter` do.
///
/// - A scalar is the value.
/// - A list of scalars is a gradient: at position `t` in [0, 1] over the slice's layers,
///   `scaled = t·(n−1)`, `i = ⌊scaled⌋`, and the value is `(1−f)·v[i] + f·v[min(n−1, i+1)]`
///   with `f = scaled − i`, computed in Double. Lists of Booleans pick `v[⌊t·(n−1)⌋]`.
///   An empty list is "not set".
/// - A list of `{filter, value}` entries takes the first whose filter is absent, `*`, or a
///   substring of the tensor name; none matching is "not set".
/// - Scopes are searched from the most specific (the model's own parameters) to the least
///   (the recipe's); the first that sets the parameter to something wins; then the default.
public enum ParameterEvaluator {
  /// The value of `setting` for `tensor` at gradient position `t`, or nil when it is not set.
  public static func evaluate(
    _ setting: ParameterSetting, tensor: String, t: Double, type: ParameterType
  ) -> BoundParameter? {
    switch setting {
    case .scalar(let s):
      return convert(s.value, type: type).map { BoundParameter($0, origin: s.range) }
    case .gradient(let values, let range):
      return gradient(values, t: t, type: type).map { BoundParameter($0, origin: range) }
    case .conditional(let entries, _):
      for entry in entries {
        let filter = entry.filter?.value
        if filter == nil || filter == "*" || (!tensor.isEmpty && tensor.contains(filter ?? "")) {
          return evaluate(entry.value, tensor: tensor, t: t, type: type)
        }
      }
      return nil
    }
  }

  /// A list's value at gradient position `t`: interpolated numbers, or the Boolean at
  /// `⌊t·(n−1)⌋`; nil for an empty list.
  static func gradient(_ values: [ParameterScalar], t: Double, type: ParameterType)
    -> ParameterValue?
  {
    guard !values.isEmpty else { return nil }
    let converted = values.map { convert($0.value, type: type) }
    let numbers = converted.compactMap { v -> Double? in
      if case .number(let d)? = v { return d }
      return nil
    }
    if numbers.count != converted.count {
      let index = Int(t * Double(values.count - 1))
      return converted[max(0, min(values.count - 1, index))]
    }
    let scaled = t * Double(values.count - 1)
    let i0 = Int(scaled)
    let i1 = min(values.count - 1, i0 + 1)
    let frac = scaled - Double(i0)
    let value = (1 - frac) * numbers[i0] + frac * numbers[i1]
    if type == .int { return .number(value.rounded(.towardZero)) }
    return .number(value)
  }

  /// The value of parameter `spec` for `tensor`, searching `scopes` in order, or the default;
  /// nil when the parameter is required and no scope sets it.
  public static func resolve(
    _ spec: ParameterSpec, scopes: ParameterScopes, tensor: String, t: Double
  )
    -> BoundParameter?
  {
    for scope in scopes.tables(for: spec.scope) {
      guard let setting = scope[spec.name] else { continue }
      if let value = evaluate(setting, tensor: tensor, t: t, type: spec.type) { return value }
    }
    if spec.isRequired { return nil }
    let value: ParameterValue
    switch spec.type {
    case .bool: value = .bool((spec.defaultValue ?? 0) != 0)
    case .optionalFloat, .float, .int: value = spec.defaultValue.map { .number($0) } ?? .none
    }
    return BoundParameter(value, origin: nil)
  }

  static func convert(_ value: YAMLValue, type: ParameterType) -> ParameterValue? {
    switch (value, type) {
    case (.int(let i), .bool): return .bool(i != 0)
    case (.int(let i), _): return .number(Double(i))
    case (.float(let d), .bool): return .bool(d != 0)
    case (.float(let d), _): return .number(d)
    case (.bool(let b), .bool): return .bool(b)
    case (.bool(let b), _): return .number(b ? 1 : 0)
    case (.string(let s), .bool):
      switch s.lowercased() {
      case "true", "yes", "on", "1", "t", "y": return .bool(true)
      default: return .bool(false)
      }
    case (.string(let s), _):
      return Double(s.trimmingSpaces).map { .number($0) }
    case (.null, _): return nil
    }
  }
}

extension String {
  /// The string without leading and trailing spaces.
  var trimmingSpaces: String {
    String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
  }
}
