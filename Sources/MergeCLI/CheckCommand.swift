import MergeCompiler
import MergeModel
import MergeRecipe

/// `merge check RECIPE`: checks a recipe without reading any weights.
struct CheckCommand: Subcommand {
  static let configuration = CommandConfiguration(
    commandName: "check",
    abstract: "Check a recipe without reading any weights.",
    discussion: """
      Reads the recipe and the config.json of every model it names, and reports every mistake
      at once: unknown keys, methods and parameters, wrong types, out-of-range values, missing
      parameters, arity and base-model rules, missing model folders and bad layer ranges.
      Prints a one-line summary and exits 0 when the recipe is sound; prints each finding as
      'file:line:column: error: message' and exits 1 when it is not.
      """,
    arguments: [
      .positional("recipe", help: "The recipe file (mergekit YAML)."),
      .allowUnknown,
    ])

  var recipe: String
  var allowUnknown: Bool

  init(_ arguments: ParsedArguments) throws(UsageError) {
    recipe = arguments.positional("recipe") ?? ""
    allowUnknown = arguments.flag("allow-unknown")
  }

  func run(console: Console) -> Int32 {
    let report = RecipeChecker.check(
      path: recipe, options: RecipeOptions(allowUnknown: allowUnknown))
    console.err(render(report, recipePath: recipe))
    guard !report.hasErrors, let parsed = report.recipe else {
      console.err(countLine(report) + "\n")
      return ExitCode.failure
    }
    var line = "\(recipe): ok — \(RecipeSummary.describe(parsed))"
    if report.warningCount > 0 {
      line += " (\(report.warningCount) warning\(report.warningCount == 1 ? "" : "s"))"
    }
    console.out(line + "\n")
    return ExitCode.success
  }
}

/// Renders a report's diagnostics with source lines from the recipe text that was checked.
func render(_ report: CheckReport, recipePath: String) -> String {
  let sources = report.text.map { [recipePath: $0] } ?? [:]
  return DiagnosticRenderer(sources: sources).render(report.diagnostics)
}

/// "2 errors, 1 warning".
func countLine(_ report: CheckReport) -> String {
  let e = report.errorCount
  let w = report.warningCount
  var parts = ["\(e) error\(e == 1 ? "" : "s")"]
  if w > 0 { parts.append("\(w) warning\(w == 1 ? "" : "s")") }
  return parts.joined(separator: ", ")
}

/// One-line descriptions of recipes for summaries.
enum RecipeSummary {
  static func describe(_ recipe: Recipe) -> String {
    if recipe.stages.count == 1, let stage = recipe.stages.first { return describe(stage) }
    let names = recipe.stages.map { $0.name?.value ?? "final" }
    return "\(recipe.stages.count) stages (\(names.joined(separator: ", ")))"
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
