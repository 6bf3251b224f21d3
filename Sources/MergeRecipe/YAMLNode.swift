/// A YAML value with its place in the file: a scalar, a sequence or a mapping.
///
/// Aliases are resolved to a copy of the anchored node; merge keys (`<<`) are expanded into the
/// mapping that holds them. Every node keeps the range of the text it was read from.
public struct YAMLNode: Sendable, Hashable {
  /// The three kinds of YAML node.
  public enum Kind: Sendable, Hashable {
    case scalar(YAMLScalar)
    case sequence([YAMLNode])
    case mapping([YAMLPair])
  }

  /// What the node holds.
  public var kind: Kind
  /// Where the node's text is.
  public var range: SourceRange
  /// The node's explicit tag (`!!str`, `tag:yaml.org,2002:str`), if any, in long form.
  public var tag: String?

  /// Creates a node.
  public init(_ kind: Kind, range: SourceRange, tag: String? = nil) {
    self.kind = kind
    self.range = range
    self.tag = tag
  }

  /// The scalar, if this node is one.
  public var scalar: YAMLScalar? {
    if case .scalar(let s) = kind { return s }
    return nil
  }

  /// The elements, if this node is a sequence.
  public var sequence: [YAMLNode]? {
    if case .sequence(let s) = kind { return s }
    return nil
  }

  /// The pairs, if this node is a mapping.
  public var mapping: [YAMLPair]? {
    if case .mapping(let m) = kind { return m }
    return nil
  }

  /// A short description of the node's kind for messages: "a mapping", "a list", "a string".
  public var kindDescription: String {
    switch kind {
    case .mapping: return "a mapping"
    case .sequence: return "a list"
    case .scalar: return resolved.kindDescription
    }
  }

  /// The node's scalar resolved to a typed value (YAML 1.1 core rules), or `nil` for collections.
  public var resolved: YAMLValue {
    guard case .scalar(let s) = kind else { return .string("") }
    return s.resolved(tag: tag)
  }
}

/// One key and value of a mapping.
public struct YAMLPair: Sendable, Hashable {
  /// The key node.
  public var key: YAMLNode
  /// The value node.
  public var value: YAMLNode

  /// Creates a pair.
  public init(key: YAMLNode, value: YAMLNode) {
    self.key = key
    self.value = value
  }
}

/// A scalar's text and how it was written.
public struct YAMLScalar: Sendable, Hashable {
  /// How a scalar was written in the file.
  public enum Style: Sendable, Hashable {
    case plain, singleQuoted, doubleQuoted, literal, folded
  }

  /// The scalar's text after unescaping and folding.
  public var value: String
  /// How it was written.
  public var style: Style

  /// Creates a scalar.
  public init(_ value: String, style: Style = .plain) {
    self.value = value
    self.style = style
  }

  /// Whether the scalar was quoted or written as a block: then it is always a string.
  public var isQuoted: Bool { style != .plain }

  /// Resolves the scalar to a typed value.
  ///
  /// Follows YAML 1.1 as PyYAML's `safe_load` does for null and booleans (`yes`, `on`, …), so
  /// that recipes mean what they mean to mergekit. Numbers are read more generously than
  /// PyYAML (`1e-5` is a number, as pydantic then makes of PyYAML's string).
  public func resolved(tag: String? = nil) -> YAMLValue {
    if let tag {
      switch tag {
      case "tag:yaml.org,2002:str": return .string(value)
      case "tag:yaml.org,2002:null": return .null
      case "tag:yaml.org,2002:bool":
        if let b = Self.bool(value) { return .bool(b) }
        return .string(value)
      case "tag:yaml.org,2002:int":
        if let i = Self.integer(value) { return .int(i) }
        return .string(value)
      case "tag:yaml.org,2002:float":
        if let i = Self.integer(value) { return .float(Double(i)) }
        if let d = Self.float(value) { return .float(d) }
        return .string(value)
      default: break
      }
    }
    guard style == .plain else { return .string(value) }
    switch value {
    case "", "~", "null", "Null", "NULL": return .null
    default: break
    }
    if let b = Self.bool(value) { return .bool(b) }
    if let i = Self.integer(value) { return .int(i) }
    if let d = Self.float(value) { return .float(d) }
    return .string(value)
  }

  static func bool(_ s: String) -> Bool? {
    switch s {
    case "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON": return true
    case "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF": return false
    default: return nil
    }
  }

  static func integer(_ text: String) -> Int? {
    var s = Substring(text)
    var negative = false
    if let first = s.first, first == "-" || first == "+" {
      negative = first == "-"
      s = s.dropFirst()
    }
    guard !s.isEmpty, !s.hasPrefix("_") else { return nil }
    let digits = s.filter { $0 != "_" }
    var radix = 10
    var body = Substring(digits)
    if body.hasPrefix("0x") {
      radix = 16
      body = body.dropFirst(2)
    } else if body.hasPrefix("0o") {
      radix = 8
      body = body.dropFirst(2)
    } else if body.count > 1 && body.hasPrefix("0") {
      // YAML 1.1 reads a leading zero as octal, as PyYAML does.
      radix = 8
      body = body.dropFirst()
    }
    guard !body.isEmpty, body.allSatisfy({ $0.isASCII && $0.isHexDigit }),
      let magnitude = Int(body, radix: radix)
    else { return nil }
    return negative ? -magnitude : magnitude
  }

  static func float(_ text: String) -> Double? {
    switch text {
    case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF": return .infinity
    case "-.inf", "-.Inf", "-.INF": return -.infinity
    case ".nan", ".NaN", ".NAN": return .nan
    default: break
    }
    // [-+]? ( \.[0-9]+ | [0-9][0-9_]* (\.[0-9_]*)? ) ([eE][-+]?[0-9]+)?
    var chars = Array(text.utf8)
    chars.removeAll { $0 == UInt8(ascii: "_") }
    var i = 0
    func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }
    if i < chars.count, chars[i] == UInt8(ascii: "-") || chars[i] == UInt8(ascii: "+") { i += 1 }
    var mantissaDigits = 0
    while i < chars.count, isDigit(chars[i]) {
      i += 1
      mantissaDigits += 1
    }
    if i < chars.count, chars[i] == UInt8(ascii: ".") {
      i += 1
      while i < chars.count, isDigit(chars[i]) {
        i += 1
        mantissaDigits += 1
      }
    }
    guard mantissaDigits > 0 else { return nil }
    if i < chars.count, chars[i] == UInt8(ascii: "e") || chars[i] == UInt8(ascii: "E") {
      i += 1
      if i < chars.count, chars[i] == UInt8(ascii: "-") || chars[i] == UInt8(ascii: "+") {
        i += 1
      }
      var expDigits = 0
      while i < chars.count, isDigit(chars[i]) {
        i += 1
        expDigits += 1
      }
      guard expDigits > 0 else { return nil }
    }
    guard i == chars.count else { return nil }
    return Double(String(decoding: chars, as: UTF8.self))
  }
}

/// A scalar resolved to its YAML type.
public enum YAMLValue: Sendable, Hashable {
  case null
  case bool(Bool)
  case int(Int)
  case float(Double)
  case string(String)

  /// The value as a number, when it is one.
  public var number: Double? {
    switch self {
    case .int(let i): return Double(i)
    case .float(let d): return d
    default: return nil
    }
  }

  /// A short description for messages: "a number", "a string", "a boolean", "null".
  public var kindDescription: String {
    switch self {
    case .null: return "null"
    case .bool: return "a boolean"
    case .int, .float: return "a number"
    case .string: return "a string"
    }
  }
}

/// One YAML document of a file: its root node (nil when the document is empty).
public struct YAMLDocument: Sendable, Hashable {
  /// The document's root node.
  public var root: YAMLNode?
  /// Where the document starts.
  public var range: SourceRange

  /// Creates a document.
  public init(root: YAMLNode?, range: SourceRange) {
    self.root = root
    self.range = range
  }
}
