import MergeCompiler
import MergeModel
import MergeRecipe

/// How many times each input's bytes are read to compute a graph.
func reads(_ graph: TensorGraph) -> String {
  "input reads: "
    + graph.passesReading().map { "#\($0.input) read \($0.passes)×" }.joined(separator: ", ")
}

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
      .seed,
      .flag(
        "passes",
        help: "Print the graph after each optimizing pass, with node counts and input reads."),
      .allowUnknown,
    ])

  var recipe: String
  var tensor: String?
  var seed: UInt64
  var allowUnknown: Bool
  var passes: Bool

  init(_ arguments: ParsedArguments) throws(UsageError) {
    recipe = arguments.positional("recipe") ?? ""
    tensor = arguments.option("tensor")
    seed = try seedOption(arguments)
    allowUnknown = arguments.flag("allow-unknown")
    passes = arguments.flag("passes")
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
        var graph = try Lowering.lower(t, method: plan.method, seed: seed)
        if passes {
          out +=
            "== lowered: \(graph.nodes.count) nodes; \(reads(graph))\n"
            + graph.text(models: plan.models)
          try PassPipeline.standard().run(&graph) { name, g, changed in
            out +=
              "== after \(name)\(changed ? "" : " (no change)"): \(g.nodes.count) nodes; \(reads(g))\n"
            if changed { out += g.text(models: plan.models) }
          }
        } else {
          try PassPipeline.standard().run(&graph)
          out += graph.text(models: plan.models)
        }
      } catch let error as LoweringError {
        console.err("error: \(error.description)\n")
        return ExitCode.failure
      } catch {
        console.err("error: \(error)\n")
        return ExitCode.failure
      }
    }
    console.out(out)
    return ExitCode.success
  }
}
