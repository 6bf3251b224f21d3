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
        out +=
          compilation.stages.isEmpty
          ? graph.text(models: plan.models) : inlined(graph, compilation)
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

  /// An output tensor's graph with the stage tensors it reads inlined before it, each node
  /// tagged with its stage, numbered as one program; a stage tensor read twice is listed once.
  func inlined(_ graph: TensorGraph, _ compilation: Compilation) -> String {
    guard let plan = compilation.plan else { return "" }
    var lines: [String] = []
    var next = 0
    var stores: [String: Int] = [:]
    func emit(_ g: TensorGraph, _ models: [ResolvedModel], stage: String?) -> Int {
      var produced: [Int: Int] = [:]
      for (i, input) in g.plan.inputs.enumerated() {
        guard let s = models[input.model].stage,
          let compiled = compilation.stages.first(where: { $0.name == s }),
          let producer = compiled.graphs[input.tensor]
        else { continue }
        let key = s + "\u{0}" + input.tensor
        if let known = stores[key] {
          produced[i] = known
        } else {
          let store = emit(producer, compiled.plan.models, stage: s)
          stores[key] = store
          produced[i] = store
        }
      }
      lines += g.nodeLines(
        models: models, first: next, tag: stage ?? compilation.outputStage ?? "output",
        produced: produced)
      next += g.nodes.count
      return next - g.nodes.count + g.output.index
    }
    _ = emit(graph, plan.models, stage: nil)
    return "tensor \(graph.plan.name) \(graph.plan.shape) → \(graph.plan.outputDType.rawValue)\n"
      + lines.joined(separator: "\n") + "\n"
  }
}
