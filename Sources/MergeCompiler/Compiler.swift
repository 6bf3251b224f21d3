import MergeModel
import MergeRecipe

/// How far ``Compiler/compile(path:options:)`` goes.
public enum CompilePhase: Int, Sendable, Comparable {
  /// Decode the recipe and check it: keys, methods, parameters, arity, model folders and their
  /// safetensors headers (`merge check`).
  case check
  /// Also plan every output tensor: its inputs, its parameters evaluated, the method's own
  /// rules (reads headers only, still no tensor data).
  case resolution
  /// Also lower every tensor to a graph and run the optimizing passes (`merge run`, `plan`,
  /// `graph`).
  case graphs

  public static func < (a: CompilePhase, b: CompilePhase) -> Bool { a.rawValue < b.rawValue }
}

/// What a compilation is asked for.
public struct CompileOptions: Sendable {
  /// Which diagnostics are errors (`--allow-unknown`).
  public var policy = DiagnosticPolicy()
  /// The Hugging Face hub cache repository ids are read from (the environment's by default;
  /// mergekit's `--transformers-cache` names another).
  public var hubCache = HubCache.fromEnvironment()
  /// Where repositories missing from the hub cache are read from (configs and safetensors
  /// headers only); nil keeps the compile offline.
  public var remote: (any RemoteSnapshotReader)?
  /// The seed of the random methods' streams (`--seed`).
  public var seed: UInt64 = 0
  /// How far to go.
  public var phase = CompilePhase.graphs
  /// Whether to run the optimizing passes at all (tests compare both pipelines).
  public var optimize = true
  /// Whether the passes fuse elementwise chains (`--no-fuse`; the bytes are the same).
  public var fuse = true
  /// Compile only this output tensor (`merge graph --tensor`).
  public var onlyTensor: String?
  /// Whether to keep each graph as lowered and after each pass (`merge graph --passes`).
  public var keepTrace = false
  /// The dtype a LoRA-adapted weight is rounded to before merging (`--lora-merge-dtype`);
  /// nil keeps it in f32, as every input is computed.
  public var loraMergeDType: DType?
  /// Whether every tensor of every intermediate stage is compiled (`--intermediates`, which
  /// writes them), not only those the output depends on.
  public var allStageTensors = false

  /// The defaults: everything, optimized, seed 0, unknown names are errors.
  public init() {}
}

/// One step of a graph's compilation, kept with ``CompileOptions/keepTrace``.
public struct PassTrace: Sendable {
  /// "lowering", or the pass's name.
  public var pass: String
  /// The graph after the step.
  public var graph: TensorGraph
  /// Whether the step changed the graph.
  public var changed: Bool
}

/// An intermediate stage of a compiled multi-stage recipe: what the output reads of it.
///
/// Its tensors are computed in memory where a later stage reads them (``ResolvedModel/stage``
/// names the stage a model of a later plan is), never written unless asked.
public struct CompiledStage: Sendable {
  /// The stage's name.
  public var name: String
  /// The stage's resolved merge.
  public var plan: MergePlan
  /// The graphs of the stage's tensors a run computes, by tensor name: those later stages
  /// read, or all of them with ``CompileOptions/allStageTensors``.
  public var graphs: [String: TensorGraph]
  /// The stage's YAML document (an intermediate folder's `mergekit_config.yml`).
  public var recipeText: String
}

/// A compiled merge, ready to run or to price.
public struct CompiledMerge: Sendable {
  /// The resolved merge: models and tensor plans.
  public var plan: MergePlan
  /// One optimized graph per output tensor, in the plan's order.
  public var graphs: [TensorGraph]
  /// The recipe as it was checked (what the output records as `mergekit_config.yml`).
  public var recipeText: String
  /// The seed the random methods' streams were keyed by.
  public var seed: UInt64
  /// The intermediate stages, each after the stages it reads (none for one stage).
  public var stages: [CompiledStage] = []

  /// The intermediate stage named `name`.
  public func stage(_ name: String) -> CompiledStage? { stages.first { $0.name == name } }

  /// The models the merge reads from folders, its stages' included, each once, stages first.
  public var inputModels: [ResolvedModel] {
    var seen = Set<String>()
    return (stages.flatMap(\.plan.models) + plan.models).filter {
      $0.stage == nil && seen.insert($0.reference.identity).inserted
    }
  }
}

/// The result of compiling a recipe: every diagnostic, and as much of the program as its
/// phase and its errors allow.
public struct Compilation: Sendable {
  /// The recipe file.
  public var file: String
  /// The recipe's text as read (diagnostics quote it), when it could be read.
  public var text: String?
  /// The decoded recipe, when its YAML could be read.
  public var recipe: Recipe?
  /// Every error and warning, in file order, severities decided by the policy.
  public var diagnostics: [Diagnostic]
  /// The resolved merge (from phase `resolution`, when there are no errors).
  public var plan: MergePlan?
  /// The optimized graphs (from phase `graphs`, when there are no errors).
  public var graphs: [TensorGraph] = []
  /// Each graph's steps, with ``CompileOptions/keepTrace``.
  public var traces: [[PassTrace]] = []
  /// The seed the graphs were compiled with.
  public var seed: UInt64
  /// The intermediate stages of a multi-stage recipe (from phase `graphs`).
  public var stages: [CompiledStage] = []
  /// The name of the stage whose output is the recipe's, when it has one.
  public var outputStage: String?

  /// Whether any diagnostic is an error.
  public var hasErrors: Bool { diagnostics.contains { $0.isError } }
  /// The number of errors.
  public var errorCount: Int { diagnostics.count(where: { $0.isError }) }
  /// The number of warnings.
  public var warningCount: Int { diagnostics.count(where: { !$0.isError }) }

  /// The merge, when the compilation reached its graphs without errors.
  public var merge: CompiledMerge? {
    guard !hasErrors, let plan, let text, graphs.count == plan.tensors.count else { return nil }
    return CompiledMerge(
      plan: plan, graphs: graphs, recipeText: text, seed: seed, stages: stages)
  }
}

/// The one entry point from a recipe to its program: check → resolve → lower → passes, each
/// phase only when the one before found no errors, every finding a ``Diagnostic``.
///
/// `merge check`, `plan`, `graph` and `run`, calibration and the tests all compile through
/// here, so that they see the same diagnostics and the same graphs.
public enum Compiler {
  /// Compiles the recipe file at `path`.
  public static func compile(path: String, options: CompileOptions = CompileOptions())
    -> Compilation
  {
    let report = RecipeChecker.check(
      path: path, hubCache: options.hubCache, remote: options.remote, policy: options.policy)
    return compile(report, file: path, options: options)
  }

  /// Compiles recipe `text` as if read from `file` (model paths relative to its folder).
  public static func compile(
    text: String, file: String, options: CompileOptions = CompileOptions()
  ) -> Compilation {
    compile(
      RecipeChecker.check(
        text: text, file: file, hubCache: options.hubCache, remote: options.remote,
        policy: options.policy), file: file, options: options)
  }

  static func compile(_ report: CheckReport, file: String, options: CompileOptions)
    -> Compilation
  {
    var bag = DiagnosticBag(file: file)
    bag.append(contentsOf: report.diagnostics)
    var compilation = Compilation(
      file: file, text: report.text, recipe: report.recipe, diagnostics: [], seed: options.seed)
    // A phase runs when the findings so far hold no error under the policy (an unknown key
    // that --allow-unknown makes a warning does not stop the compile).
    let policy = options.policy
    if let recipe = report.recipe, let output = report.stages?.output {
      compilation.outputStage = recipe.stages[output].name?.value
    }
    if !policy.hasErrors(bag.diagnostics), options.phase >= .resolution,
      let recipe = report.recipe
    {
      compilation.plan = resolve(recipe, report: report, policy: policy, into: &bag)
      if let dtype = options.loraMergeDType, var plan = compilation.plan {
        for i in plan.tensors.indices { plan.tensors[i].adapterDType = dtype }
        compilation.plan = plan
      }
    }
    if !policy.hasErrors(bag.diagnostics), options.phase >= .graphs, let plan = compilation.plan {
      lower(plan, options: options, into: &compilation, bag: &bag)
      if let recipe = report.recipe, let text = report.text, let graph = report.stages {
        compilation.stages = lowerStages(
          recipe, graph: graph, plans: report.stagePlans, text: text, output: plan,
          graphs: compilation.graphs, options: options, bag: &bag)
      }
    }
    compilation.diagnostics = options.policy.applied(to: bag.sorted)
    if compilation.hasErrors {
      compilation.plan = nil
      compilation.graphs = []
      compilation.stages = []
    }
    return compilation
  }

  /// Resolves the recipe's output stage (the stages it reads were resolved by the checker).
  static func resolve(
    _ recipe: Recipe, report: CheckReport, policy: DiagnosticPolicy,
    into bag: inout DiagnosticBag
  ) -> MergePlan? {
    guard let graph = report.stages, let output = graph.output else { return nil }
    // A stage it reads that could not be resolved has its own errors.
    for read in graph.reads[output] {
      guard let name = recipe.stages[read.stage].name?.value, report.stageFolders[name] != nil
      else { return nil }
    }
    let (resolved, diagnostics) = Resolver.resolve(
      stage: recipe.stages[output], report: report, file: bag.file ?? "", policy: policy)
    bag.append(contentsOf: diagnostics)
    return resolved
  }

  /// Lowers the tensors of the intermediate stages that the output's graphs read, directly or
  /// through other stages (every tensor with ``CompileOptions/allStageTensors``).
  static func lowerStages(
    _ recipe: Recipe, graph: StageGraph, plans: [String: MergePlan], text: String,
    output: MergePlan, graphs: [TensorGraph], options: CompileOptions,
    bag: inout DiagnosticBag
  ) -> [CompiledStage] {
    var needed: [String: Set<String>] = [:]
    func note(_ g: TensorGraph, _ models: [ResolvedModel]) {
      for input in g.plan.inputs {
        if let stage = models[input.model].stage { needed[stage, default: []].insert(input.tensor) }
      }
    }
    for g in graphs { note(g, output.models) }
    var stages: [CompiledStage] = []
    // Readers before the stages they read, so that every tensor read is known when its
    // stage is lowered.
    for i in graph.order.reversed() {
      guard let name = recipe.stages[i].name?.value, var plan = plans[name] else { continue }
      if let dtype = options.loraMergeDType {
        for t in plan.tensors.indices { plan.tensors[t].adapterDType = dtype }
      }
      let wanted = needed[name] ?? []
      let tensors = plan.tensors.filter { options.allStageTensors || wanted.contains($0.name) }
      guard !tensors.isEmpty else { continue }
      var lowered: [String: TensorGraph] = [:]
      var traces: [[PassTrace]] = []
      for g in lower(tensors, method: plan.method, options: options, bag: &bag, traces: &traces) {
        note(g, plan.models)
        lowered[g.plan.name] = g
      }
      stages.append(
        CompiledStage(
          name: name, plan: plan, graphs: lowered,
          recipeText: document(recipe.stages[i].range, of: text)))
    }
    return stages.reversed()
  }

  /// The lines of `text` that `range` (a stage's document) spans.
  static func document(_ range: SourceRange, of text: String) -> String {
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    let last = range.end.column > 1 ? range.end.line : range.end.line - 1
    guard range.start.line >= 1, last >= range.start.line, last <= lines.count else { return "" }
    return lines[(range.start.line - 1)..<last].joined(separator: "\n") + "\n"
  }

  /// Lowers every tensor of `plan` (or the one asked for) and runs the passes.
  static func lower(
    _ plan: MergePlan, options: CompileOptions, into compilation: inout Compilation,
    bag: inout DiagnosticBag
  ) {
    var tensors = plan.tensors
    if let only = options.onlyTensor {
      tensors = tensors.filter { $0.name == only }
      if tensors.isEmpty {
        let suggestion = Suggestion.closest(to: only, in: plan.tensors.map(\.name))
        bag.append(Diagnostic(.unknownTensor(only, suggestion: suggestion)))
        return
      }
    }
    compilation.graphs += lower(
      tensors, method: plan.method, options: options, bag: &bag, traces: &compilation.traces)
  }

  /// Lowers `tensors` and runs the passes; each failure is reported and its tensor left out.
  ///
  /// With ``CompileOptions/keepTrace``, each graph's steps are appended to `traces`.
  static func lower(
    _ tensors: [TensorPlan], method: any MergeMethod.Type, options: CompileOptions,
    bag: inout DiagnosticBag, traces: inout [[PassTrace]]
  ) -> [TensorGraph] {
    var graphs: [TensorGraph] = []
    let pipeline = PassPipeline.standard(fuse: options.fuse)
    for tensor in tensors {
      do {
        var graph = try Lowering.lower(tensor, method: method, seed: options.seed)
        var trace = [PassTrace(pass: "lowering", graph: graph, changed: true)]
        if options.optimize {
          try pipeline.run(&graph) { pass, g, changed in
            if options.keepTrace { trace.append(PassTrace(pass: pass, graph: g, changed: changed)) }
          }
        }
        graphs.append(graph)
        if options.keepTrace { traces.append(trace) }
      } catch let error as LoweringError {
        bag.report(.loweringFailed(error), at: error.origin)
      } catch let error as PassError {
        bag.report(.passFailed(error), at: tensor.origin)
      } catch {
        bag.report(.loweringFailed(tensor.name, "\(error)"), at: tensor.origin)
      }
    }
    return graphs
  }
}

extension Diagnostic.Message {
  fileprivate static func unknownTensor(_ name: String, suggestion: String?) -> Self {
    Self(
      "unknown-tensor",
      "the output has no tensor '\(name)'" + (suggestion.map { "; did you mean '\($0)'?" } ?? ""))
  }
  fileprivate static func loweringFailed(_ error: LoweringError) -> Self {
    Self("lowering-failed", error.description)
  }
  fileprivate static func loweringFailed(_ tensor: String, _ reason: String) -> Self {
    Self("lowering-failed", "tensor '\(tensor)': \(reason)")
  }
  fileprivate static func passFailed(_ error: PassError) -> Self {
    Self("internal-error", "internal error: \(error.description)")
  }
}
