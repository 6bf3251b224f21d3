import MergeModel
import MergeRecipe

/// Diagnostics for machines: JSON, and GitHub Actions' workflow commands (annotations on the
/// lines of a pull request).
enum Annotations {
  /// How `merge check --format` prints its findings.
  enum Format: String, CaseIterable {
    case text, json, github
  }

  /// Every diagnostic as JSON: id, severity, file, line, column, end, message and notes.
  static func json(_ diagnostics: [Diagnostic], file: String, ok: Bool) -> JSONValue {
    func position(_ range: SourceRange?) -> [(String, JSONValue)] {
      guard let range else { return [] }
      return [
        ("line", .integer(range.start.line)), ("column", .integer(range.start.column)),
        ("end_line", .integer(range.end.line)), ("end_column", .integer(range.end.column)),
      ]
    }
    let entries: [JSONValue] = diagnostics.map { d in
      var members: [(String, JSONValue)] = [
        ("id", .string(d.id)), ("severity", .string(d.severity.rawValue)),
        ("file", .string(d.file ?? file)),
      ]
      members += position(d.range)
      members.append(("message", .string(d.message.text)))
      members.append(
        (
          "notes",
          .array(
            d.notes.map { note in
              .object([("message", .string(note.message))] + position(note.range))
            })
        ))
      return .object(members)
    }
    return .object([
      ("file", .string(file)), ("ok", .bool(ok)),
      ("errors", .integer(diagnostics.count(where: \.isError))),
      ("warnings", .integer(diagnostics.count(where: { !$0.isError }))),
      ("diagnostics", .array(entries)),
    ])
  }

  /// Each diagnostic as a GitHub Actions workflow command:
  /// `::error file=F,line=L,col=C,endLine=…,endColumn=…,title=merge ID::message`, the notes
  /// after the message on lines of their own.
  static func github(_ diagnostics: [Diagnostic], file: String) -> String {
    var out = ""
    for d in diagnostics {
      var properties = ["file=" + property(d.file ?? file)]
      if let range = d.range {
        properties.append("line=\(range.start.line)")
        properties.append("col=\(range.start.column)")
        properties.append("endLine=\(range.end.line)")
        properties.append("endColumn=\(range.end.column)")
      }
      properties.append("title=" + property("merge \(d.id)"))
      var message = d.message.text
      for note in d.notes {
        message += "\nnote: " + note.message
        if let r = note.range { message += " (line \(r.start.line), column \(r.start.column))" }
      }
      out += "::\(d.isError ? "error" : "warning") \(properties.joined(separator: ","))::"
      out += data(message) + "\n"
    }
    return out
  }

  /// A command's message, escaped as the runner reads it.
  static func data(_ s: String) -> String {
    var out = ""
    for c in s {
      switch c {
      case "%": out += "%25"
      case "\r": out += "%0D"
      case "\n": out += "%0A"
      default: out.append(c)
      }
    }
    return out
  }

  /// A command's property value, escaped as the runner reads it.
  static func property(_ s: String) -> String {
    var out = ""
    for c in data(s) {
      switch c {
      case ":": out += "%3A"
      case ",": out += "%2C"
      default: out.append(c)
      }
    }
    return out
  }
}
