/// A position in a recipe file: 1-based line and column, counted in characters.
public struct SourceLocation: Sendable, Hashable, Comparable, CustomStringConvertible {
  /// The 1-based line number.
  public var line: Int
  /// The 1-based column number, in characters (not bytes).
  public var column: Int

  /// Creates a location from 1-based line and column numbers.
  public init(line: Int, column: Int) {
    self.line = line
    self.column = column
  }

  public static func < (lhs: SourceLocation, rhs: SourceLocation) -> Bool {
    (lhs.line, lhs.column) < (rhs.line, rhs.column)
  }

  public var description: String { "\(line):\(column)" }
}

/// The span of a value in a recipe file, from its first character to just past its last.
public struct SourceRange: Sendable, Hashable, CustomStringConvertible {
  /// The first character of the value.
  public var start: SourceLocation
  /// The position just past the last character of the value.
  public var end: SourceLocation

  /// Creates a range from its two ends.
  public init(start: SourceLocation, end: SourceLocation) {
    self.start = start
    self.end = end
  }

  /// A zero-width range at `location`.
  public init(at location: SourceLocation) {
    self.start = location
    self.end = location
  }

  public var description: String { "\(start)-\(end)" }
}
