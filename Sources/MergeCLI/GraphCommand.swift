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
    arguments: [CommonOption.recipe.definition, tensor.definition, passes.definition]
      + CompileArguments.definitions)

  static let tensor = Option.option(
    "tensor", value: "name", help: "Print only this output tensor.")
  static let passes = Option.flag(
    "passes", help: "Print the graph after each optimizing pass, with node counts and input reads.")

  var recipe: String
  var compile: CompileArguments
  var passes: Bool

  init(_ arguments: ParsedArguments) throws(UsageError) {
    recipe = try arguments.value(CommonOption.recipe)
    compile = try CompileArguments(arguments)
    compile.options.onlyTensor = try arguments.value(Self.tensor)
    passes = try arguments.value(Self.passes)
    compile.options.keepTrace = passes
  }

  func run(console: Console) -> Int32 {
    guard let compilation = compileReporting(recipe, options: compile.options, console: console),
      let plan = compilation.plan
    else { return ExitCode.failure }
    var out = ""
    for (i, graph) in compilation.graphs.enumerated() {
      guard passes else {
        out += graph.text(models: plan.models)
        continue
      }
      for step in compilation.traces[i] {
        let g = step.graph
        if step.pass == "lowering" {
          out += "== lowered: \(g.nodes.count) nodes; \(reads(g))\n" + g.text(models: plan.models)
          continue
        }
        out +=
          "== after \(step.pass)\(step.changed ? "" : " (no change)"): \(g.nodes.count) nodes; \(reads(g))\n"
        if step.changed { out += g.text(models: plan.models) }
      }
    }
    console.out(out)
    return ExitCode.success
  }
}
