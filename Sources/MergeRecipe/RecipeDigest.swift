/// The recipe as data, without its formatting: what a lock file and an output's provenance
/// name it by.
///
/// Each YAML document becomes canonical JSON (mapping keys sorted, scalars resolved as the
/// recipe reads them: `0.5`, `true`, `null`, strings), documents joined by newlines. Comments,
/// quoting, indentation, key order and anchors do not change it; any value that changes the
/// merge does.
public enum RecipeDigest {
  /// The normalized text of recipe `text`, or nil when it is not YAML.
  public static func normalized(_ text: String) -> String? {
    guard let parsed = try? YAMLParser.parse(text) else { return nil }
    return parsed.documents.map { $0.root.map(canonical) ?? "null" }.joined(separator: "\n")
  }

  static func canonical(_ node: YAMLNode) -> String {
    switch node.kind {
    case .mapping(let pairs):
      let members = pairs.map { (key: canonical($0.key), value: canonical($0.value)) }
        .sorted { $0.key < $1.key }
      return "{" + members.map { "\($0.key):\($0.value)" }.joined(separator: ",") + "}"
    case .sequence(let items):
      return "[" + items.map(canonical).joined(separator: ",") + "]"
    case .scalar:
      switch node.resolved {
      case .null: return "null"
      case .bool(let b): return b ? "true" : "false"
      case .int(let i): return String(i)
      case .float(let d): return d.isFinite ? "\(d)" : "\"\(d)\""
      case .string(let s): return quoted(s)
      }
    }
  }

  static func quoted(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case _ where scalar.value < 0x20: out += "\\u" + String(scalar.value, radix: 16).leftPadded(4)
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }
}

extension String {
  fileprivate func leftPadded(_ width: Int) -> String {
    String(repeating: "0", count: max(0, width - count)) + self
  }
}
