/// A problem found while reading YAML: a syntax error, an undefined alias, a duplicate key.
public struct YAMLError: Error, Sendable, Hashable, CustomStringConvertible {
  /// The kind of problem, as a diagnostic id: `yaml-syntax`, `duplicate-key`.
  public var id: String
  /// What went wrong, lower case, no trailing period.
  public var message: String
  /// Where it went wrong.
  public var range: SourceRange?
  /// Further remarks, such as where a duplicated key first appeared.
  public var notes: [Diagnostic.Note]

  /// Creates an error.
  public init(
    _ message: String, at range: SourceRange?, notes: [Diagnostic.Note] = [],
    id: String = "yaml-syntax"
  ) {
    self.id = id
    self.message = message
    self.range = range
    self.notes = notes
  }

  public var description: String {
    if let range { return "\(range.start): \(message)" }
    return message
  }
}
