/// Renders diagnostics the way compilers do: `file:line:col: error: message`, the source
/// line, a caret under the offending value, then the notes.
public struct DiagnosticRenderer: Sendable {
  private let sources: [String: [Substring]]
  /// Whether severities and carets are coloured (ANSI escapes, as compilers colour them).
  private let colored: Bool

  /// Creates a renderer that can quote lines from the given files (path → contents), in
  /// colour when `colored`.
  public init(sources: [String: String] = [:], colored: Bool = false) {
    var lines: [String: [Substring]] = [:]
    for (path, text) in sources { lines[path] = Self.lines(of: text) }
    self.sources = lines
    self.colored = colored
  }

  /// `text` in bold and the ANSI colour `code` (when colouring).
  private func paint(_ text: String, _ code: Int) -> String {
    colored ? "\u{1B}[1;\(code)m\(text)\u{1B}[0m" : text
  }

  /// The lines of `text` as libyaml numbers them: a line ends at CR LF, CR, LF, NEL, LS or
  /// PS (a recipe saved on Windows or classic Mac OS is quoted line by line too).
  public static func lines(of text: String) -> [Substring] {
    var lines: [Substring] = []
    let scalars = text.unicodeScalars
    var start = scalars.startIndex
    var i = start
    while i < scalars.endIndex {
      let c = scalars[i]
      guard ["\n", "\r", "\u{85}", "\u{2028}", "\u{2029}"].contains(c) else {
        i = scalars.index(after: i)
        continue
      }
      lines.append(Substring(scalars[start..<i]))
      var next = scalars.index(after: i)
      if c == "\r", next < scalars.endIndex, scalars[next] == "\n" {
        next = scalars.index(after: next)
      }
      start = next
      i = next
    }
    lines.append(Substring(scalars[start...]))
    return lines
  }

  /// Renders one diagnostic, ending with a newline.
  public func render(_ diagnostic: Diagnostic) -> String {
    var out = ""
    out += header(file: diagnostic.file, range: diagnostic.range)
    let severity = diagnostic.severity.rawValue + ":"
    out += paint(severity, diagnostic.isError ? 31 : 35) + " \(diagnostic.message.text)\n"
    out += snippet(file: diagnostic.file, range: diagnostic.range)
    for note in diagnostic.notes {
      if let range = note.range {
        out += header(file: diagnostic.file, range: range)
        out += paint("note:", 36) + " \(note.message)\n"
        out += snippet(file: diagnostic.file, range: range)
      } else {
        out += "  " + paint("note:", 36) + " \(note.message)\n"
      }
    }
    return out
  }

  /// Renders several diagnostics in order.
  public func render(_ diagnostics: [Diagnostic]) -> String {
    diagnostics.map(render).joined()
  }

  private func header(file: String?, range: SourceRange?) -> String {
    switch (file, range) {
    case (let file?, let range?): return "\(file):\(range.start.line):\(range.start.column): "
    case (let file?, nil): return "\(file): "
    case (nil, let range?): return "\(range.start.line):\(range.start.column): "
    case (nil, nil): return ""
    }
  }

  private func snippet(file: String?, range: SourceRange?) -> String {
    guard let file, let range, let lines = sources[file], range.start.line >= 1,
      range.start.line <= lines.count
    else { return "" }
    let line = lines[range.start.line - 1]
    let text = line.replacingTabs()
    let startColumn = max(1, range.start.column)
    let width: Int
    if range.end.line == range.start.line && range.end.column > startColumn {
      width = range.end.column - startColumn
    } else if range.end.line > range.start.line {
      width = max(1, text.count - startColumn + 1)
    } else {
      width = 1
    }
    let caret =
      String(repeating: " ", count: startColumn - 1)
      + paint("^" + String(repeating: "~", count: max(0, width - 1)), 32)
    return text + "\n" + caret + "\n"
  }
}

extension Substring {
  fileprivate func replacingTabs() -> String {
    String(self.map { $0 == "\t" ? " " : $0 })
  }
}
