import MergeCompiler
import MergeRecipe

extension Console {
  /// Prints `diagnostics` to standard error, rendered as compilers do (`file:line:col: error:
  /// message`, the source line, a caret, the notes), quoting lines from `sources` (path → text).
  ///
  /// Every error a command reports goes through here: the recipe's, and those found later
  /// (lowering, running, writing), with the recipe location they come from when there is one.
  func report(_ diagnostics: [Diagnostic], sources: [String: String] = [:]) {
    err(DiagnosticRenderer(sources: sources, colored: colored).render(diagnostics))
  }

  /// Prints one error with no location (`error: message`).
  func report(_ message: Diagnostic.Message) {
    report([Diagnostic(message)])
  }

  /// Prints a compilation's diagnostics, quoting its recipe.
  func report(_ compilation: Compilation) {
    report(compilation.diagnostics, sources: compilation.sources)
  }
}

extension Compilation {
  /// The recipe's text by path, for quoting source lines.
  var sources: [String: String] { text.map { [file: $0] } ?? [:] }

  /// "2 errors, 1 warning".
  var countLine: String {
    let e = errorCount
    let w = warningCount
    var parts = ["\(e) error\(e == 1 ? "" : "s")"]
    if w > 0 { parts.append("\(w) warning\(w == 1 ? "" : "s")") }
    return parts.joined(separator: ", ")
  }
}

/// Compiles `recipe`, printing its diagnostics (and, when there are errors, the count line);
/// nil when it has errors.
func compileReporting(_ recipe: String, options: CompileOptions, console: Console)
  -> Compilation?
{
  let compilation = Compiler.compile(path: recipe, options: options)
  console.report(compilation)
  guard !compilation.hasErrors else {
    console.err(compilation.countLine + "\n")
    return nil
  }
  return compilation
}

// MARK: - Numbers

/// `1234567` → `1.23 MB`.
func formatBytes(_ n: Int) -> String {
  let d = Double(n)
  if d >= 1e9 { return format2(d / 1e9) + " GB" }
  if d >= 1e6 { return format2(d / 1e6) + " MB" }
  if d >= 1e3 { return format2(d / 1e3) + " KB" }
  return "\(n) B"
}

/// `x` with two decimals.
func format2(_ x: Double) -> String {
  let r = (x * 100).rounded() / 100
  var s = String(r)
  if let dot = s.firstIndex(of: ".") {
    let decimals = s.distance(from: dot, to: s.endIndex) - 1
    if decimals < 2 { s += String(repeating: "0", count: 2 - decimals) }
  }
  return s
}

/// `1234567` → `1,234,567`.
func grouped(_ n: Int) -> String {
  let digits = Array(String(n.magnitude))
  var out = ""
  for (i, d) in digits.enumerated() {
    if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
    out.append(d)
  }
  return (n < 0 ? "-" : "") + out
}
