import MergeCompiler
import MergeModel
import MergeRecipe

/// `merge check RECIPE`: checks a recipe without reading any weights.
struct CheckCommand: Subcommand {
  static let configuration = CommandConfiguration(
    commandName: "check",
    abstract: "Check a recipe without reading any weights.",
    discussion: """
      Reads the recipe, the config.json of every model it names and their safetensors headers,
      and reports every mistake at once: unknown keys, methods and parameters, wrong types,
      out-of-range values, missing parameters, arity and base-model rules, missing model
      folders, bad layer ranges, missing tensors and shape mismatches. Prints a one-line
      summary and exits 0 when the recipe is sound; prints each finding as
      'file:line:column: error: message' and exits 1 when it is not.
      """,
    arguments: [CommonOption.recipe.definition, format.definition] + CheckArguments.definitions)

  static let format = Option.option(
    "format", value: "text|json|github",
    help:
      "How findings are printed: 'text' (default, on standard error), 'json' (every diagnostic with id, severity, file, line, column, message, notes) or 'github' (workflow commands that annotate the lines of a pull request), both on standard output.",
    expected: "text, json or github", parse: { Annotations.Format(rawValue: $0) })

  var recipe: String
  var options = CompileOptions()
  var format: Annotations.Format

  init(_ arguments: ParsedArguments) throws(UsageError) {
    recipe = try arguments.value(CommonOption.recipe)
    options = try CheckArguments(arguments).options
    options.phase = .resolution
    format = try arguments.value(Self.format) ?? .text
  }

  func run(console: Console) -> Int32 {
    if format != .text {
      let compilation = Compiler.compile(path: recipe, options: options)
      switch format {
      case .json:
        console.out(
          Annotations.json(compilation.diagnostics, file: recipe, ok: !compilation.hasErrors)
            .formatted() + "\n")
      case .github, .text:
        console.out(Annotations.github(compilation.diagnostics, file: recipe))
      }
      return compilation.hasErrors ? ExitCode.failure : ExitCode.success
    }
    guard let compilation = compileReporting(recipe, options: options, console: console),
      let parsed = compilation.recipe
    else { return ExitCode.failure }
    var line = "\(recipe): ok — \(RecipeSummary.describe(parsed))"
    let warnings = compilation.warningCount
    if warnings > 0 { line += " (\(warnings) warning\(warnings == 1 ? "" : "s"))" }
    console.out(line + "\n")
    return ExitCode.success
  }
}

/// One-line descriptions of recipes for summaries.
enum RecipeSummary {
  static func describe(_ recipe: Recipe) -> String {
    if recipe.stages.count == 1, let stage = recipe.stages.first { return describe(stage) }
    let names = recipe.stages.prefix(8).map { $0.name?.value ?? "unnamed" }
    let more = recipe.stages.count > 8 ? ", …" : ""
    return "\(recipe.stages.count) stages (\(names.joined(separator: ", "))\(more))"
  }

  static func describe(_ stage: MergeConfiguration) -> String {
    let method = stage.mergeMethod?.value ?? "?"
    let base = stage.baseModel
    let others = stage.referencedModels.filter { $0.identity != base?.identity }
    var text = "\(method), \(others.count) model\(others.count == 1 ? "" : "s")"
    if let slices = stage.slices?.value {
      text += " in \(slices.count) slice\(slices.count == 1 ? "" : "s")"
    }
    if let base { text += ", base \(base.description)" }
    return text
  }
}
