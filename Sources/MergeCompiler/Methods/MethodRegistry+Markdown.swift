extension MethodRegistry {
  /// The README's table of methods and their parameters, generated so that a test can keep
  /// the README in step with the checker.
  public static func markdownTable() -> String {
    var out = "| method | base model | models | parameters (default) |\n"
    out += "|---|---|---|---|\n"
    for m in specs {
      let base: String
      switch m.base {
      case .required: base = "required"
      case .optional: base = "optional"
      case .ignored: base = "—"
      }
      var arity: String
      switch (m.minInputs, m.maxInputs, m.minNonBase, m.maxNonBase) {
      case (_, _, let lo?, let hi?) where lo == hi: arity = "\(lo) + base"
      case (_, _, let lo?, nil): arity = "≥ \(lo)"
      case (let lo, let hi?, _, _) where lo == hi: arity = "\(lo)"
      case (let lo, nil, _, _): arity = lo > 1 ? "≥ \(lo)" : "any"
      case (let lo, let hi?, _, _): arity = "\(lo)–\(hi)"
      }
      if m.base == .required && m.maxInputs != nil { arity += " (base included)" }
      let params = m.parameters.map { p -> String in
        let scope: String
        switch p.scope {
        case .shared: scope = ""
        case .input: scope = ", per model"
        case .nonBase: scope = ", per model"
        }
        let value = p.isRequired ? "required" : (p.defaultDescription ?? "none")
        return "`\(p.name)` (\(value)\(scope))"
      }
      let paramText = params.isEmpty ? "—" : params.joined(separator: ", ")
      out += "| `\(m.name)` — \(m.summary) | \(base) | \(arity) | \(paramText) |\n"
    }
    return out
  }
}
