/// One finding about a recipe: an error or a warning, where it is, and what to do about it.
public struct Diagnostic: Sendable, Hashable {
  /// How serious a finding is.
  public enum Severity: String, Sendable, Hashable, Comparable {
    case warning
    case error

    public static func < (lhs: Severity, rhs: Severity) -> Bool {
      lhs == .warning && rhs == .error
    }
  }

  /// The text of a diagnostic.
  ///
  /// Declared as static functions next to the code that emits them.
  public struct Message: Sendable, Hashable, CustomStringConvertible {
    /// The message, lower case, without a trailing period, names in single quotes.
    public let text: String

    /// Creates a message from its text.
    public init(_ text: String) {
      self.text = text
    }

    public var description: String { text }
  }

  /// A supplementary remark attached to a diagnostic, optionally pointing elsewhere.
  public struct Note: Sendable, Hashable {
    /// The remark.
    public var message: String
    /// Where the remark points, if anywhere.
    public var range: SourceRange?

    /// Creates a note.
    public init(_ message: String, at range: SourceRange? = nil) {
      self.message = message
      self.range = range
    }
  }

  /// Error or warning.
  public var severity: Severity
  /// The file the finding is about (a recipe, a config.json, a safetensors file).
  public var file: String?
  /// Where in `file` the offending value is.
  public var range: SourceRange?
  /// What is wrong.
  public var message: Message
  /// Further remarks: suggestions, related locations.
  public var notes: [Note]

  /// Creates a diagnostic.
  public init(
    _ severity: Severity, _ message: Message, file: String? = nil, at range: SourceRange? = nil,
    notes: [Note] = []
  ) {
    self.severity = severity
    self.message = message
    self.file = file
    self.range = range
    self.notes = notes
  }

  /// Whether this finding is an error.
  public var isError: Bool { severity == .error }
}

/// Collects diagnostics in the order they are found.
public struct DiagnosticBag: Sendable {
  /// Every diagnostic collected so far.
  public private(set) var diagnostics: [Diagnostic] = []
  /// The file that located diagnostics refer to unless they name another.
  public var file: String?

  /// Creates an empty bag whose diagnostics default to `file`.
  public init(file: String? = nil) {
    self.file = file
  }

  /// Whether any error was collected.
  public var hasErrors: Bool { diagnostics.contains { $0.isError } }
  /// The number of errors collected.
  public var errorCount: Int { diagnostics.count(where: { $0.isError }) }
  /// The number of warnings collected.
  public var warningCount: Int { diagnostics.count(where: { !$0.isError }) }

  /// Records an error at `range`.
  public mutating func error(
    _ message: Diagnostic.Message, at range: SourceRange?, notes: [Diagnostic.Note] = []
  ) {
    diagnostics.append(Diagnostic(.error, message, file: file, at: range, notes: notes))
  }

  /// Records a warning at `range`.
  public mutating func warning(
    _ message: Diagnostic.Message, at range: SourceRange?, notes: [Diagnostic.Note] = []
  ) {
    diagnostics.append(Diagnostic(.warning, message, file: file, at: range, notes: notes))
  }

  /// Records a diagnostic of the given severity at `range`.
  public mutating func emit(
    _ severity: Diagnostic.Severity, _ message: Diagnostic.Message, at range: SourceRange?,
    notes: [Diagnostic.Note] = []
  ) {
    diagnostics.append(Diagnostic(severity, message, file: file, at: range, notes: notes))
  }

  /// Records a finished diagnostic as it is.
  public mutating func append(_ diagnostic: Diagnostic) {
    diagnostics.append(diagnostic)
  }

  /// Records several finished diagnostics.
  public mutating func append(contentsOf other: [Diagnostic]) {
    diagnostics.append(contentsOf: other)
  }

  /// The diagnostics sorted by file and position, errors and warnings interleaved.
  public var sorted: [Diagnostic] {
    var unique: [Diagnostic] = []
    var seen = Set<Diagnostic>()
    for d in diagnostics where seen.insert(d).inserted { unique.append(d) }
    return unique.enumerated().sorted { a, b in
      let la = a.element.range?.start ?? SourceLocation(line: 0, column: 0)
      let lb = b.element.range?.start ?? SourceLocation(line: 0, column: 0)
      if la != lb { return la < lb }
      return a.offset < b.offset
    }.map(\.element)
  }
}
