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

  /// What a diagnostic says: a stable id, the severity it has unless the policy changes it,
  /// and the text.
  ///
  /// Declared as static members next to the code that emits them. The id names the kind of
  /// finding (`unknown-key`, `duplicate-model`) and never changes once released: tools,
  /// `--format json` output and ``DiagnosticPolicy`` key on it, never on the text.
  public struct Message: Sendable, Hashable, CustomStringConvertible {
    /// The stable id, lower-case words joined by hyphens.
    public let id: String
    /// The severity unless ``DiagnosticPolicy`` says otherwise.
    public let severity: Severity
    /// The message, lower case, without a trailing period, names in single quotes.
    public let text: String

    /// Creates an error message of kind `id`.
    public init(_ id: String, _ text: String) {
      self.init(id, .error, text)
    }

    /// Creates a message of kind `id` with the given severity.
    public init(_ id: String, _ severity: Severity, _ text: String) {
      self.id = id
      self.severity = severity
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

  /// Creates a diagnostic with the message's own severity.
  public init(
    _ message: Message, file: String? = nil, at range: SourceRange? = nil, notes: [Note] = []
  ) {
    self.severity = message.severity
    self.message = message
    self.file = file
    self.range = range
    self.notes = notes
  }

  /// The stable id of the finding's kind (the message's).
  public var id: String { message.id }

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

  /// Records `message` at `range`, with the severity the message declares.
  public mutating func report(
    _ message: Diagnostic.Message, at range: SourceRange?, notes: [Diagnostic.Note] = []
  ) {
    diagnostics.append(Diagnostic(message, file: file, at: range, notes: notes))
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
    var seen = Set<Diagnostic>(minimumCapacity: diagnostics.count)
    for d in diagnostics where seen.insert(d).inserted { unique.append(d) }
    return unique.enumerated().sorted { a, b in
      let la = a.element.range?.start ?? SourceLocation(line: 0, column: 0)
      let lb = b.element.range?.start ?? SourceLocation(line: 0, column: 0)
      if la != lb { return la < lb }
      return a.offset < b.offset
    }.map(\.element)
  }
}

/// Decides the final severity of every diagnostic, in one place.
///
/// mergekit silently ignores keys and parameter names it does not know, so `merge` reports
/// them as errors (they are almost always a typo that changes the result); `--allow-unknown`
/// makes them warnings for old recipes kept as they are. The first such error of a run gets a
/// note saying so.
public struct DiagnosticPolicy: Sendable, Hashable {
  /// Whether unknown keys and parameter names are warnings rather than errors.
  public var allowUnknown: Bool
  /// Whether a recipe whose output would be NaN or infinite by construction (mergekit writes
  /// it) is a warning rather than an error.
  public var allowNonFinite: Bool
  /// Whether models of different architectures may be merged (mergekit's `--allow-crimes`).
  public var allowCrimes: Bool

  /// The ids `--allow-unknown` turns into warnings.
  public static let unknownNames: Set<String> = ["unknown-key", "unknown-parameter"]
  /// The ids `--allow-nonfinite` turns into warnings.
  public static let nonFiniteOutputs: Set<String> = ["zero-weight-sum"]
  /// The ids `--allow-crimes` turns into warnings.
  public static let crimes: Set<String> = ["mixed-architectures"]

  /// The note on the first unknown-name error.
  public static let allowUnknownNote =
    "mergekit silently ignores unknown keys; pass --allow-unknown to report them as warnings"

  /// A policy; `allowUnknown` as `--allow-unknown` sets it, `allowNonFinite` as
  /// `--allow-nonfinite` and `allowCrimes` as `--allow-crimes` do.
  public init(allowUnknown: Bool = false, allowNonFinite: Bool = false, allowCrimes: Bool = false) {
    self.allowUnknown = allowUnknown
    self.allowNonFinite = allowNonFinite
    self.allowCrimes = allowCrimes
  }

  /// The severity a diagnostic of kind `message` has under this policy.
  public func severity(of message: Diagnostic.Message) -> Diagnostic.Severity {
    if allowUnknown && Self.unknownNames.contains(message.id) { return .warning }
    if allowNonFinite && Self.nonFiniteOutputs.contains(message.id) { return .warning }
    if allowCrimes && Self.crimes.contains(message.id) { return .warning }
    return message.severity
  }

  /// Whether any of `diagnostics` is an error under this policy.
  public func hasErrors(_ diagnostics: [Diagnostic]) -> Bool {
    diagnostics.contains { severity(of: $0.message) == .error }
  }

  /// `diagnostics` with this policy's severities, and the `--allow-unknown` note on the first
  /// unknown-name error (in the order given).
  public func applied(to diagnostics: [Diagnostic]) -> [Diagnostic] {
    var told = false
    return diagnostics.map { d in
      var d = d
      d.severity = severity(of: d.message)
      if !told && d.isError && Self.unknownNames.contains(d.id) {
        d.notes.append(Diagnostic.Note(Self.allowUnknownNote))
        told = true
      }
      return d
    }
  }
}
