import MergeCompiler
import MergeModel
import MergeRecipe

/// `merge graph RECIPE`: prints the compiled graph of each output tensor.
struct GraphCommand: Subcommand {
  static let configuration = CommandConfiguration(
    commandName: "graph",
    abstract: "Print the graph of tensor operations a recipe compiles to.",
    discussion: """
      One block per output tensor: its name, shape and stored dtype, then one node per line
      ('%3 = task_vector %1, %0'), loads annotated with the model and tensor they read. Reads
      config.json files and safetensors headers only.
      """,
    arguments: [
      .positional("recipe", help: "The recipe file (mergekit YAML)."),
      .option("tensor", value: "name", help: "Print only this output tensor."),
      .option("seed", value: "n", help: "Seed of the random methods (default: 0)."),
      .flag(
        "allow-unknown", help: "Report unknown keys and parameter names as warnings, not errors."),
    ])

  var recipe: String
  var tensor: String?
  var seed: UInt64
  var allowUnknown: Bool

  init(_ arguments: ParsedArguments) throws(UsageError) {
    recipe = arguments.positional("recipe") ?? ""
    tensor = arguments.option("tensor")
    seed = arguments.option("seed").flatMap { UInt64($0) } ?? 0
    allowUnknown = arguments.flag("allow-unknown")
  }

  func run(console: Console) -> Int32 {
    guard let (plan, _) = compile(recipe, allowUnknown: allowUnknown, console: console) else {
      return ExitCode.failure
    }
    var tensors = plan.tensors
    if let tensor {
      tensors = tensors.filter { $0.name == tensor }
      if tensors.isEmpty {
        var message = "error: the output has no tensor '\(tensor)'"
        if let s = Suggestion.closest(to: tensor, in: plan.tensors.map(\.name)) {
          message += "; did you mean '\(s)'?"
        }
        console.err(message + "\n")
        return ExitCode.failure
      }
    }
    var out = ""
    for t in tensors {
      do {
        out += try Lowering.lower(t, method: plan.method, seed: seed).text(models: plan.models)
      } catch {
        console.err("error: \(error.description)\n")
        return ExitCode.failure
      }
    }
    console.out(out)
    return ExitCode.success
  }
}
