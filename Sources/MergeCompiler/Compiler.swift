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

  /// Whether any diagnostic is an error.
  public var hasErrors: Bool { diagnostics.contains { $0.isError } }
  /// The number of errors.
  public var errorCount: Int { diagnostics.count(where: { $0.isError }) }
  /// The number of warnings.
  public var warningCount: Int { diagnostics.count(where: { !$0.isError }) }

  /// The merge, when the compilation reached its graphs without errors.
  public var merge: CompiledMerge? {
    guard !hasErrors, let plan, let text, graphs.count == plan.tensors.count else { return nil }
    return CompiledMerge(plan: plan, graphs: graphs, recipeText: text, seed: seed)
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
    let report = RecipeChecker.check(path: path, hubCache: options.hubCache, remote: options.remote)
    return compile(report, file: path, options: options)
  }

  /// Compiles recipe `text` as if read from `file` (model paths relative to its folder).
  public static func compile(
    text: String, file: String, options: CompileOptions = CompileOptions()
  ) -> Compilation {
    compile(
      RecipeChecker.check(
        text: text, file: file, hubCache: options.hubCache, remote: options.remote), file: file,
      options: options)
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
    }
    compilation.diagnostics = options.policy.applied(to: bag.sorted)
    if compilation.hasErrors {
      compilation.plan = nil
      compilation.graphs = []
    }
    return compilation
  }

  /// Resolves the recipe's stage; of a recipe of several stages, which cannot run yet (an
  /// error), every stage that reads no earlier one, for its diagnostics.
  static func resolve(
    _ recipe: Recipe, report: CheckReport, policy: DiagnosticPolicy,
    into bag: inout DiagnosticBag
  ) -> MergePlan? {
    if recipe.stages.count > 1, let second = recipe.stages.dropFirst().first {
      bag.report(.multiStageUnsupported, at: SourceRange(at: second.range.start))
    }
    var plan: MergePlan?
    var earlier: Set<String> = []
    for stage in recipe.stages {
      defer { if let name = stage.name?.value { earlier.insert(name) } }
      if stage.referencedModels.contains(where: { earlier.contains($0.model.path.value) }) {
        continue
      }
      let (resolved, diagnostics) = Resolver.resolve(
        stage: stage, report: report, file: bag.file ?? "", policy: policy)
      bag.append(contentsOf: diagnostics)
      plan = resolved
    }
    return recipe.stages.count == 1 ? plan : nil
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
    let pipeline = PassPipeline.standard(fuse: options.fuse)
    for tensor in tensors {
      do {
        var graph = try Lowering.lower(tensor, method: plan.method, seed: options.seed)
        var trace = [PassTrace(pass: "lowering", graph: graph, changed: true)]
        if options.optimize {
          try pipeline.run(&graph) { pass, g, changed in
            if options.keepTrace { trace.append(PassTrace(pass: pass, graph: g, changed: changed)) }
          }
        }
        compilation.graphs.append(graph)
        if options.keepTrace { compilation.traces.append(trace) }
      } catch let error as LoweringError {
        bag.report(.loweringFailed(error), at: error.origin)
      } catch let error as PassError {
        bag.report(.passFailed(error), at: tensor.origin)
      } catch {
        bag.report(.loweringFailed(tensor.name, "\(error)"), at: tensor.origin)
      }
    }
  }
}

extension Diagnostic.Message {
  fileprivate static let multiStageUnsupported = Self(
    "not-implemented",
    "recipes of several stages are not supported yet; each stage is checked, none can run")
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
