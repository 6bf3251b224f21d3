import MergeCompiler

/// `merge methods`: lists the merge methods with their parameters.
struct MethodsCommand: Subcommand {
  static let configuration = CommandConfiguration(
    commandName: "methods",
    abstract: "List the merge methods and their parameters.",
    arguments: [markdown.definition])

  static let markdown = Option.flag(
    "markdown", help: "Print a Markdown table (as in the README).")

  var markdown: Bool

  init(_ arguments: ParsedArguments) throws(UsageError) {
    markdown = try arguments.value(Self.markdown)
  }

  func run(console: Console) -> Int32 {
    if markdown {
      console.out(MethodRegistry.markdownTable())
      return ExitCode.success
    }
    var out = ""
    for m in MethodRegistry.specs {
      out += "\(m.name) — \(m.prettyName): \(m.summary)\n"
      switch m.base {
      case .required: out += "  base model: required\n"
      case .optional: out += "  base model: optional\n"
      case .ignored: break
      }
      for p in m.parameters {
        var line = "  \(p.name)"
        line +=
          p.isRequired
          ? " (required" : (p.defaultDescription.map { " (default \($0)" } ?? " (optional")
        if p.scope != .shared { line += ", per model" }
        line += "): \(p.summary)\n"
        out += line
      }
    }
    console.out(out)
    return ExitCode.success
  }
}
