/// A JSON value that keeps object key order and the exact text of numbers, so that a
/// `config.json` written back differs from its source only where it was edited.
public enum JSONValue: Sendable, Hashable {
  case null
  case bool(Bool)
  /// A number, kept as written (`1e-06`, `10000.0`, `4`).
  case number(String)
  case string(String)
  case array([JSONValue])
  /// Members in file order.
  case object([(String, JSONValue)])

  public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
    switch (lhs, rhs) {
    case (.null, .null): return true
    case (.bool(let a), .bool(let b)): return a == b
    case (.number(let a), .number(let b)): return a == b
    case (.string(let a), .string(let b)): return a == b
    case (.array(let a), .array(let b)): return a == b
    case (.object(let a), .object(let b)):
      return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    default: return false
    }
  }

  public func hash(into hasher: inout Hasher) {
    switch self {
    case .null: hasher.combine(0)
    case .bool(let b): hasher.combine(b)
    case .number(let s): hasher.combine(s)
    case .string(let s): hasher.combine(s)
    case .array(let a): hasher.combine(a)
    case .object(let o):
      for (k, v) in o {
        hasher.combine(k)
        hasher.combine(v)
      }
    }
  }

  /// A number value from an integer.
  public static func integer(_ i: Int) -> JSONValue { .number(String(i)) }

  /// The value as an integer, when it is an integral number.
  public var intValue: Int? {
    guard case .number(let s) = self else { return nil }
    if let i = Int(s) { return i }
    if let d = Double(s), d == d.rounded(), abs(d) < 9e15 { return Int(d) }
    return nil
  }

  /// The value as a string, when it is one.
  public var stringValue: String? {
    if case .string(let s) = self { return s }
    return nil
  }

  /// The value as a Boolean, when it is one.
  public var boolValue: Bool? {
    if case .bool(let b) = self { return b }
    return nil
  }

  /// The members, when the value is an object.
  public var objectValue: [(String, JSONValue)]? {
    if case .object(let o) = self { return o }
    return nil
  }

  /// The elements, when the value is an array.
  public var arrayValue: [JSONValue]? {
    if case .array(let a) = self { return a }
    return nil
  }

  /// The member named `key`, when the value is an object that has it.
  public subscript(key: String) -> JSONValue? {
    guard case .object(let o) = self else { return nil }
    return o.first { $0.0 == key }?.1
  }

  /// Sets or appends member `key` of an object; does nothing to other values.
  public mutating func set(_ key: String, _ value: JSONValue) {
    guard case .object(var o) = self else { return }
    if let i = o.firstIndex(where: { $0.0 == key }) {
      o[i].1 = value
    } else {
      o.append((key, value))
    }
    self = .object(o)
  }

  /// Parses JSON text.
  ///
  /// - Throws: `JSONParseError` with the byte offset of the first problem.
  public static func parse(
    _ bytes: some Collection<UInt8>, rejectingDuplicateKeys: Bool = false
  ) throws(JSONParseError) -> JSONValue {
    var parser = JSONParser(Array(bytes))
    parser.rejectDuplicates = rejectingDuplicateKeys
    return try parser.parseDocument()
  }

  /// Parses JSON text.
  public static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
    try parse(Array(text.utf8))
  }
}

/// Why JSON text could not be parsed, and where.
public struct JSONParseError: Error, Sendable, Hashable, CustomStringConvertible {
  /// What is wrong.
  public var reason: String
  /// The byte offset of the problem.
  public var offset: Int

  public var description: String { "\(reason) at byte \(offset)" }
}

private struct JSONParser {
  static let maximumDepth = 512
  let bytes: [UInt8]
  var i = 0
  var depth = 0
  var rejectDuplicates = false

  init(_ bytes: [UInt8]) {
    self.bytes = bytes
    // Skip a UTF-8 byte-order mark.
    if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3 }
  }

  mutating func parseDocument() throws(JSONParseError) -> JSONValue {
    let v = try value()
    skipSpace()
    guard i == bytes.count else { throw fail("unexpected text after the JSON value") }
    return v
  }

  func fail(_ reason: String) -> JSONParseError { JSONParseError(reason: reason, offset: i) }

  mutating func skipSpace() {
    while i < bytes.count,
      bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09
    {
      i += 1
    }
  }

  mutating func value() throws(JSONParseError) -> JSONValue {
    skipSpace()
    guard i < bytes.count else { throw fail("unexpected end of JSON") }
    switch bytes[i] {
    case UInt8(ascii: "{"): return try object()
    case UInt8(ascii: "["): return try array()
    case UInt8(ascii: "\""): return .string(try string())
    case UInt8(ascii: "t"): try literal("true"); return .bool(true)
    case UInt8(ascii: "f"): try literal("false"); return .bool(false)
    case UInt8(ascii: "n"): try literal("null"); return .null
    case UInt8(ascii: "N"): try literal("NaN"); return .number("NaN")
    case UInt8(ascii: "I"): try literal("Infinity"); return .number("Infinity")
    default: return try number()
    }
  }

  mutating func literal(_ word: String) throws(JSONParseError) {
    let w = Array(word.utf8)
    guard i + w.count <= bytes.count, Array(bytes[i..<i + w.count]) == w else {
      throw fail("invalid literal")
    }
    i += w.count
  }

  mutating func number() throws(JSONParseError) -> JSONValue {
    let start = i
    if i < bytes.count, bytes[i] == UInt8(ascii: "-") {
      i += 1
      if i < bytes.count, bytes[i] == UInt8(ascii: "I") {
        try literal("Infinity")
        return .number("-Infinity")
      }
    }
    var digits = 0
    let firstDigit = i
    while i < bytes.count, (0x30...0x39).contains(bytes[i]) {
      i += 1
      digits += 1
    }
    guard digits > 0 else { throw fail("invalid value") }
    // As Python's json and serde_json: no leading zeros ("01").
    if digits > 1 && bytes[firstDigit] == UInt8(ascii: "0") {
      i = firstDigit
      throw fail("invalid number (a leading zero)")
    }
    if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
      i += 1
      var frac = 0
      while i < bytes.count, (0x30...0x39).contains(bytes[i]) {
        i += 1
        frac += 1
      }
      guard frac > 0 else { throw fail("invalid number") }
    }
    if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
      i += 1
      if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
      var exp = 0
      while i < bytes.count, (0x30...0x39).contains(bytes[i]) {
        i += 1
        exp += 1
      }
      guard exp > 0 else { throw fail("invalid number") }
    }
    return .number(String(decoding: bytes[start..<i], as: UTF8.self))
  }

  mutating func string() throws(JSONParseError) -> String {
    i += 1  // opening quote
    // Most strings (every name in a safetensors header) have no escapes: take their bytes as
    // they are, in one scan.
    let start = i
    let plainEnd = bytes.withUnsafeBufferPointer { b -> Int? in
      var j = start
      while j < b.count {
        let c = b[j]
        if c == UInt8(ascii: "\"") { return j }
        if c == UInt8(ascii: "\\") || c < 0x20 { return nil }
        j &+= 1
      }
      return nil
    }
    if let end = plainEnd {
      guard let text = String(validating: bytes[start..<end], as: UTF8.self) else {
        throw fail("invalid UTF-8 in string")
      }
      i = end + 1
      return text
    }
    var out: [UInt8] = []
    while true {
      guard i < bytes.count else { throw fail("unterminated string") }
      let c = bytes[i]
      i += 1
      switch c {
      case UInt8(ascii: "\""):
        // As Python's json and Rust's serde_json, text that is not UTF-8 is refused, not
        // repaired (two repaired names could silently become one).
        guard let text = String(validating: out, as: UTF8.self) else {
          i = start
          throw fail("invalid UTF-8 in string")
        }
        return text
      case UInt8(ascii: "\\"):
        guard i < bytes.count else { throw fail("unterminated string") }
        let e = bytes[i]
        i += 1
        switch e {
        case UInt8(ascii: "\""): out.append(0x22)
        case UInt8(ascii: "\\"): out.append(0x5C)
        case UInt8(ascii: "/"): out.append(0x2F)
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "u"):
          var scalar = try hex4()
          if (0xD800..<0xDC00).contains(scalar), i + 1 < bytes.count,
            bytes[i] == UInt8(ascii: "\\"),
            bytes[i + 1] == UInt8(ascii: "u")
          {
            i += 2
            let low = try hex4()
            if (0xDC00..<0xE000).contains(low) {
              scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            }
          }
          let u = Unicode.Scalar(scalar) ?? "\u{FFFD}"
          out.append(contentsOf: Array(String(Character(u)).utf8))
        default: throw fail("invalid escape in string")
        }
      default:
        guard c >= 0x20 else { throw fail("control character in string") }
        out.append(c)
      }
    }
  }

  mutating func hex4() throws(JSONParseError) -> UInt32 {
    guard i + 4 <= bytes.count else { throw fail("invalid \\u escape") }
    var v: UInt32 = 0
    for _ in 0..<4 {
      let c = bytes[i]
      i += 1
      let d: UInt32
      switch c {
      case 0x30...0x39: d = UInt32(c - 0x30)
      case 0x41...0x46: d = UInt32(c - 0x41 + 10)
      case 0x61...0x66: d = UInt32(c - 0x61 + 10)
      default: throw fail("invalid \\u escape")
      }
      v = v * 16 + d
    }
    return v
  }

  mutating func array() throws(JSONParseError) -> JSONValue {
    depth += 1
    guard depth <= Self.maximumDepth else { throw fail("JSON nested too deeply") }
    defer { depth -= 1 }
    i += 1
    var items: [JSONValue] = []
    skipSpace()
    if i < bytes.count, bytes[i] == UInt8(ascii: "]") {
      i += 1
      return .array(items)
    }
    while true {
      items.append(try value())
      skipSpace()
      guard i < bytes.count else { throw fail("unterminated array") }
      if bytes[i] == UInt8(ascii: ",") {
        i += 1
      } else if bytes[i] == UInt8(ascii: "]") {
        i += 1
        return .array(items)
      } else {
        throw fail("expected ',' or ']'")
      }
    }
  }

  mutating func object() throws(JSONParseError) -> JSONValue {
    depth += 1
    guard depth <= Self.maximumDepth else { throw fail("JSON nested too deeply") }
    defer { depth -= 1 }
    i += 1
    var members: [(String, JSONValue)] = []
    // Where each key is, so that a header of a million tensors parses in linear time.
    var positions: [String: Int] = [:]
    skipSpace()
    if i < bytes.count, bytes[i] == UInt8(ascii: "}") {
      i += 1
      return .object(members)
    }
    while true {
      skipSpace()
      guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else {
        throw fail("expected a string key")
      }
      let key = try string()
      skipSpace()
      guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
      i += 1
      let v = try value()
      // Small objects are searched; large ones (a header's tensors) use the index.
      let index =
        members.count < 16 ? members.firstIndex { $0.0 == key } : positions[key]
      if let index {
        if rejectDuplicates { throw fail("duplicate key '\(key)'") }
        members[index].1 = v
      } else {
        if members.count == 15 {
          for (k, member) in members.enumerated() { positions[member.0] = k }
        }
        if members.count >= 15 { positions[key] = members.count }
        members.append((key, v))
      }
      skipSpace()
      guard i < bytes.count else { throw fail("unterminated object") }
      if bytes[i] == UInt8(ascii: ",") {
        i += 1
      } else if bytes[i] == UInt8(ascii: "}") {
        i += 1
        return .object(members)
      } else {
        throw fail("expected ',' or '}'")
      }
    }
  }
}

// MARK: - Writing

extension JSONValue {
  /// The value as JSON text, indented by two spaces per level as transformers writes
  /// `config.json`, ending without a newline.
  public func formatted(indent: Int = 2) -> String {
    var out = ""
    write(into: &out, level: 0, indent: indent)
    return out
  }

  private func write(into out: inout String, level: Int, indent: Int) {
    let pad = String(repeating: " ", count: (level + 1) * indent)
    let closePad = String(repeating: " ", count: level * indent)
    switch self {
    case .null: out += "null"
    case .bool(let b): out += b ? "true" : "false"
    case .number(let s): out += s
    case .string(let s): out += Self.quoted(s)
    case .array(let a):
      if a.isEmpty {
        out += "[]"
        return
      }
      out += "[\n"
      for (n, v) in a.enumerated() {
        out += pad
        v.write(into: &out, level: level + 1, indent: indent)
        out += n == a.count - 1 ? "\n" : ",\n"
      }
      out += closePad + "]"
    case .object(let o):
      if o.isEmpty {
        out += "{}"
        return
      }
      out += "{\n"
      for (n, (k, v)) in o.enumerated() {
        out += pad + Self.quoted(k) + ": "
        v.write(into: &out, level: level + 1, indent: indent)
        out += n == o.count - 1 ? "\n" : ",\n"
      }
      out += closePad + "}"
    }
  }

  /// `s` as a JSON string literal.
  public static func quoted(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
      switch u {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      default:
        if u.value < 0x20 {
          let hex = String(u.value, radix: 16)
          out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        } else {
          out.unicodeScalars.append(u)
        }
      }
    }
    return out + "\""
  }
}
