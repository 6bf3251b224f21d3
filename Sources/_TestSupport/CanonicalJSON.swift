import MergeModel

/// `value` with every object's members sorted by key and the keys in `dropping` left out, so
/// that two JSON files compare as JSON (tokenizer.json written by another tool, say).
public func canonicalJSON(_ value: JSONValue, dropping: Set<String> = []) -> JSONValue {
  switch value {
  case .object(let members):
    return .object(
      members.filter { !dropping.contains($0.0) }.sorted { $0.0 < $1.0 }.map {
        ($0.0, canonicalJSON($0.1))
      })
  case .array(let items): return .array(items.map { canonicalJSON($0) })
  default: return value
  }
}
