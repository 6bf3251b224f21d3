import MergeModel
import MergeRecipe

/// The result of checking a recipe: the recipe, every diagnostic, and what was learnt about
/// the models it names.
public struct CheckReport: Sendable {
  /// The recipe, when its YAML could be read.
  public var recipe: Recipe?
  /// The recipe's text as checked (what diagnostics quote and a run records), when readable.
  public var text: String?
  /// Every error and warning, in file order.
  public var diagnostics: [Diagnostic]
  /// The model folders the recipe names, by resolved path (only those that could be opened).
  public var folders: [String: ModelFolder]
  /// The weights of those folders, headers validated, by resolved path.
  public var weights: [String: ModelWeights] = [:]
  /// The hub cache repository ids were looked up in.
  public var hubCache = HubCache.fromEnvironment()
  /// The LoRA adapters the recipe names, by resolved path (only those that fit their models).
  public var adapters: [String: LoraAdapter] = [:]
  /// The task-vector folders the recipe adds to models, by resolved path (those that fit).
  public var taskVectors: [String: TaskVectorSource] = [:]
  /// The outputs of the stages other stages read, by stage name (multi-stage recipes).
  public var stageFolders: [String: ModelFolder] = [:]
  /// The resolved plans of those stages, by stage name.
  public var stagePlans: [String: MergePlan] = [:]
  /// Which stage reads which, and which is the output (nil when the YAML could not be read).
  var stages: StageGraph?

  /// Whether any diagnostic is an error.
  public var hasErrors: Bool { diagnostics.contains { $0.isError } }
  /// The number of errors.
  public var errorCount: Int { diagnostics.count(where: { $0.isError }) }
  /// The number of warnings.
  public var warningCount: Int { diagnostics.count(where: { !$0.isError }) }
}

/// Checks a recipe completely before any weights are read.
///
/// Reads the recipe, then for each stage: the method and its parameters (names, types, ranges,
/// scopes, required values), arity and base-model rules, dtypes, the model folders named
/// (config.json only) and layer ranges. Every finding is collected; nothing stops at the first.
public enum RecipeChecker {
  /// The shard size a stage's output is laid out for when a later stage reads it (a run's
  /// default, as mergekit-multi's intermediate folders are written).
  static let stageShardSize = ShardLayout.defaultShardSize

  /// The dtype names mergekit accepts for `dtype` and `out_dtype`.
  public static let dtypeNames = ["bfloat16", "float16", "float32", "float64"]

  /// Reads and checks the recipe file at `path`.
  public static func check(
    path: String, hubCache: HubCache = .fromEnvironment(),
    remote: (any RemoteSnapshotReader)? = nil, policy: DiagnosticPolicy = DiagnosticPolicy()
  ) -> CheckReport {
    let bytes: [UInt8]
    do {
      bytes = try FileSystem.read(path, limit: 16 << 20)
    } catch {
      var bag = DiagnosticBag(file: path)
      bag.report(.cannotReadRecipe(error.description), at: nil)
      return CheckReport(recipe: nil, diagnostics: bag.diagnostics, folders: [:])
    }
    guard let text = String(validating: bytes, as: UTF8.self) else {
      var bag = DiagnosticBag(file: path)
      bag.report(.notUTF8, at: nil)
      return CheckReport(recipe: nil, diagnostics: bag.diagnostics, folders: [:])
    }
    return check(text: text, file: path, hubCache: hubCache, remote: remote, policy: policy)
  }

  /// Checks recipe `text` as if read from `file`; relative model paths are resolved against
  /// the folder of `file`.
  ///
  /// The stages of a multi-stage recipe are checked in the order they read one another; a stage
  /// that others read is resolved once checked (`policy` says which findings stop that).
  public static func check(
    text: String, file: String, hubCache: HubCache = .fromEnvironment(),
    remote: (any RemoteSnapshotReader)? = nil, policy: DiagnosticPolicy = DiagnosticPolicy()
  ) -> CheckReport {
    let (recipe, decodeDiagnostics) = RecipeDecoder.decode(text, file: file)
    var bag = DiagnosticBag(file: file)
    bag.append(contentsOf: decodeDiagnostics)
    var resolver = ModelResolver(
      baseDirectory: FileSystem.directoryName(file), hubCache: hubCache, remote: remote)
    resolver.remoteTokenizers =
      recipe?.stages.contains {
        $0.tokenizerSource != nil || $0.tokenizer != nil || $0.chatTemplate != nil
      } ?? false
    var folders: [String: ModelFolder] = [:]
    var weights: [String: ModelWeights] = [:]
    var adapters: [String: LoraAdapter] = [:]
    var taskVectors: [String: TaskVectorSource] = [:]
    var stagePlans: [String: MergePlan] = [:]
    var graph: StageGraph?
    if let recipe {
      let stages = StageGraph(recipe.stages, bag: &bag)
      graph = stages
      let names = Set(stages.index.keys)
      for i in stages.order {
        let stage = recipe.stages[i]
        let before = bag.diagnostics.count
        var checker = StageChecker(
          stage: stage, bag: bag, resolver: resolver,
          pendingStages: names.subtracting(resolver.stages.keys))
        checker.run()
        bag = checker.bag
        resolver = checker.resolver
        folders.merge(checker.folders) { a, _ in a }
        weights.merge(checker.weights) { a, _ in a }
        adapters.merge(checker.adapters) { a, _ in a }
        taskVectors.merge(checker.taskVectors) { a, _ in a }
        // A stage that others read is resolved now (headers only), so that they are checked
        // against its output as against any model folder.
        guard let name = stage.name?.value, stages.isRead.contains(i),
          !policy.hasErrors(Array(bag.diagnostics[before...])),
          stages.reads[i].allSatisfy({
            resolver.stages[recipe.stages[$0.stage].name?.value ?? ""] != nil
          })
        else { continue }
        var partial = CheckReport(recipe: recipe, diagnostics: [], folders: folders)
        partial.weights = weights
        partial.adapters = adapters
        partial.taskVectors = taskVectors
        partial.hubCache = hubCache
        partial.stageFolders = resolver.stages
        let (plan, diagnostics) = Resolver.resolve(
          stage: stage, report: partial, file: file, policy: policy)
        bag.append(contentsOf: diagnostics)
        guard let plan, !policy.hasErrors(diagnostics) else { continue }
        stagePlans[name] = plan
        do {
          resolver.stages[name] = try ModelFolder(
            produced: plan.producedModel(stage: name, shardSize: RecipeChecker.stageShardSize))
        } catch {
          bag.report(.badModel(error, written: name), at: stage.name?.range)
        }
      }
    }
    var report = CheckReport(recipe: recipe, diagnostics: bag.sorted, folders: folders)
    report.text = text
    report.weights = weights
    report.adapters = adapters
    report.taskVectors = taskVectors
    report.hubCache = hubCache
    report.stageFolders = resolver.stages
    report.stagePlans = stagePlans
    report.stages = graph
    return report
  }
}

// MARK: - One stage

/// Where a parameter table sits, which decides what its entries can affect.
private enum TableLevel {
  case global, module, slice
  case model(isBase: Bool)
}

private struct StageChecker {
  let stage: MergeConfiguration
  var bag: DiagnosticBag
  var resolver: ModelResolver
  /// The stages whose outputs could not be resolved (they have errors of their own, or are
  /// part of a cycle): references to them are not checked.
  let pendingStages: Set<String>
  var folders: [String: ModelFolder] = [:]
  var weights: [String: ModelWeights] = [:]
  var adapters: [String: LoraAdapter] = [:]
  var taskVectors: [String: TaskVectorSource] = [:]
  /// Each folder's layer count, checked against its tensors.
  var layerCounts: [String: Int] = [:]
  var spec: MethodSpec?

  init(
    stage: MergeConfiguration, bag: DiagnosticBag, resolver: ModelResolver,
    pendingStages: Set<String>
  ) {
    self.stage = stage
    self.bag = bag
    self.resolver = resolver
    self.pendingStages = pendingStages
  }

  mutating func run() {
    checkMethod()
    checkDtype(stage.dtype, key: "dtype")
    checkDtype(stage.outDtype, key: "out_dtype")
    for model in stage.referencedModels { checkModel(model) }
    checkArchitectures()
    if case .model(let m)? = stage.tokenizerSource { checkModel(m) }
    if case .model(let m)? = stage.tokenizer?.source { checkModel(m) }
    // Models a `tokens:` entry takes rows from are opened too (the resolver requires them to be
    // among the models merged).
    for entry in stage.tokenizer?.tokens ?? [] {
      switch entry.source {
      case .model(let m)?, .modelToken(let m, _, _)?:
        if !stage.referencedModels.contains(where: { $0.identity == m.identity }) { checkModel(m) }
      default: break
      }
    }

    checkTable(stage.parameters, level: .global)
    if let models = stage.models {
      checkModelsForm(models.value, keyRange: models.range, module: nil)
    }
    if let slices = stage.slices {
      for slice in slices.value { checkSlice(slice, module: nil) }
    }
    for module in stage.modules?.value ?? [] {
      checkTable(module.parameters, level: .module)
      if let models = module.models {
        checkModelsForm(models.value, keyRange: models.range, module: module)
      }
      for slice in module.slices?.value ?? [] { checkSlice(slice, module: module) }
    }
  }

  // MARK: Method

  mutating func checkMethod() {
    guard let method = stage.mergeMethod else { return }
    if let spec = MethodRegistry.method(named: method.value)?.spec {
      self.spec = spec
      if spec.base == .required, stage.baseModel == nil, !allSlicesHaveBase {
        bag.report(.needsBaseModel(spec.name), at: method.range)
      }
      if spec.base == .ignored, let base = stage.baseModel {
        bag.report(.baseModelIgnored(spec.name, base.description), at: base.range)
      }
    } else {
      bag.report(
        .unknownMethod(
          method.value,
          suggestion: Suggestion.closest(
            to: method.value, in: MethodRegistry.specs.map(\.name))),
        at: method.range,
        notes: [
          Diagnostic.Note(
            "known methods: " + MethodRegistry.specs.map(\.name).joined(separator: ", "))
        ])
    }
  }

  var allSlicesHaveBase: Bool {
    let slices =
      (stage.slices?.value ?? []) + (stage.modules?.value ?? []).flatMap { $0.slices?.value ?? [] }
    let hasModelsForm =
      stage.models != nil || (stage.modules?.value ?? []).contains { $0.models != nil }
    return !slices.isEmpty && !hasModelsForm && slices.allSatisfy { $0.baseModel != nil }
  }

  mutating func checkDtype(_ dtype: Located<String>?, key: String) {
    guard let dtype else { return }
    var name = dtype.value
    if name.hasPrefix("torch.") { name.removeFirst("torch.".count) }
    if RecipeChecker.dtypeNames.contains(name) { return }
    if name == "int64" {
      bag.report(.integerDtype(key), at: dtype.range)
      return
    }
    let aliases = [
      "bf16": "bfloat16", "fp16": "float16", "half": "float16", "f16": "float16",
      "fp32": "float32", "float": "float32", "f32": "float32", "fp64": "float64",
      "double": "float64", "f64": "float64",
    ]
    let suggestion =
      aliases[name.lowercased()] ?? Suggestion.closest(to: name, in: RecipeChecker.dtypeNames)
    bag.report(
      .unknownDtype(dtype.value, key: key, suggestion: suggestion), at: dtype.range,
      notes: [
        Diagnostic.Note("expected one of " + RecipeChecker.dtypeNames.joined(separator: ", "))
      ])
  }

  // MARK: Models

  func isStage(_ model: ModelReference) -> Bool {
    pendingStages.contains(model.model.path.value)
  }

  mutating func checkModel(_ model: ModelReference) {
    if isStage(model) { return }
    switch resolver.folder(for: model) {
    case .success(let folder):
      if folders[folder.path] == nil && weights[folder.path] == nil {
        // Validate the safetensors headers (never the data) once per folder.
        let opened: ModelWeights
        do {
          opened = try folder.openWeights()
        } catch {
          bag.report(.badWeights(error), at: model.model.path.range)
          return
        }
        weights[folder.path] = opened
        do {
          layerCounts[folder.path] = try folder.layerCount(weights: opened)
        } catch {
          bag.report(.badModel(error, written: model.model.path.value), at: model.model.path.range)
          return
        }
      }
      folders[folder.path] = folder
      if let opened = weights[folder.path] { checkAdapter(model, weights: opened) }
      if let revision = model.model.revision, case .local = resolver.location(of: model.model) {
        bag.report(.revisionIgnored(revision.value), at: revision.range)
      }
      if resolver.isFromWorkingDirectory(model.model) {
        bag.report(
          .fromWorkingDirectory(model.model.path.value), at: model.model.path.range,
          notes: [
            Diagnostic.Note(
              "not beside the recipe ('\(resolver.path(of: model.model.path.value))'); mergekit reads paths from the working directory, so the recipe means the same to both only when run from here"
            )
          ])
      }
    case .failure(let error):
      let path = model.model.path.value
      var notes = notes(explaining: error, model.model)
      if let stage = Suggestion.closest(
        to: path, in: resolver.stages.keys.sorted() + pendingStages.sorted())
      {
        notes.append(Diagnostic.Note("did you mean stage '\(stage)'?"))
      }
      bag.report(
        .badModel(error, written: path), at: model.model.path.range, notes: notes)
    }
  }

  /// The models' architectures (config.json's `architectures`, or `override_architecture`)
  /// agree: mergekit refuses to mix them without `--allow-crimes`, and so does merge.
  mutating func checkArchitectures() {
    var first: (ModelReference, String)?
    for model in stage.referencedModels {
      guard
        let architecture = model.overrideArchitecture?.value ?? folder(model)?.config.architecture
      else { continue }
      guard let (firstModel, firstArchitecture) = first else {
        first = (model, architecture)
        continue
      }
      if architecture != firstArchitecture {
        bag.report(
          .mixedArchitectures(model.description, architecture, firstArchitecture),
          at: model.model.path.range,
          notes: [
            Diagnostic.Note(
              "'\(firstModel.description)' is \(firstArchitecture)", at: firstModel.model.path.range
            )
          ])
        return
      }
    }
  }

  /// Where `model` was looked for, and how to get it, when it could not be opened.
  func notes(explaining error: ModelError, _ model: ModelPath) -> [Diagnostic.Note] {
    let written = model.path.value
    var places = ["'\(resolver.path(of: written))'"]
    if let fromHere = resolver.workingDirectoryPath(of: written) {
      places.append("'\(fromHere)' from the working directory (as mergekit would)")
    }
    switch error {
    case .notFound:
      guard places != ["'\(written)'"] else { return [] }
      return [Diagnostic.Note("looked for " + places.joined(separator: " and "))]
    case .notCached(let repository, _):
      let revision = model.revision.map { " --revision \($0.value)" } ?? ""
      return [
        Diagnostic.Note("no folder " + places.joined(separator: " or ") + " either"),
        Diagnostic.Note(
          "with the network off (HF_HUB_OFFLINE) merge cannot fetch it: unset HF_HUB_OFFLINE, fetch it into that cache with 'hf download \(repository)\(revision)', or set HF_HOME or HF_HUB_CACHE to the cache that holds it"
        ),
      ]
    case .hub:
      // Read from the Hub because no folder had that name: say so, in case one was meant.
      return [Diagnostic.Note("no folder " + places.joined(separator: " or ") + " either")]
    default:
      return []
    }
  }

  /// Opens `model`'s LoRA adapter, if it has one, and checks that it fits `weights`.
  mutating func checkAdapter(_ model: ModelReference, weights: ModelWeights) {
    guard let lora = model.lora else { return }
    // `model+folder` where the folder is a task vector ('merge diff'), not a LoRA adapter.
    let location = resolver.location(of: lora).path
    if TaskVectorSource.isTaskVector(location) {
      do {
        let source = try TaskVectorSource(path: location)
        guard
          let folder = folders[resolver.path(of: model)] ?? (try? resolver.folder(for: model).get())
        else { return }
        var problems = source.problems(with: weights)
        if let mismatch = source.sizeMismatch(with: folder) { problems.append(mismatch) }
        for problem in problems {
          bag.report(.badAdapter(problem, written: lora.path.value), at: lora.path.range)
        }
        if problems.isEmpty { taskVectors[location] = source }
      } catch {
        bag.report(.badAdapter(error, written: lora.path.value), at: lora.path.range)
      }
      return
    }
    guard let opened = resolver.adapter(for: model) else { return }
    switch opened {
    case .success(let adapter):
      let problems = adapter.problems(with: weights)
      for problem in problems {
        bag.report(.badAdapter(problem, written: lora.path.value), at: lora.path.range)
      }
      if problems.isEmpty { adapters[adapter.path] = adapter }
    case .failure(let error):
      bag.report(
        .badAdapter(error, written: lora.path.value), at: lora.path.range,
        notes: notes(explaining: error, lora))
    }
  }

  func folder(_ model: ModelReference) -> ModelFolder? {
    if isStage(model) { return nil }
    return folders[resolver.path(of: model)]
  }

  /// The layer count of `model`'s folder (config.json's, checked against its tensors).
  func layerCount(_ model: ModelReference) -> Int? {
    folder(model).flatMap { layerCounts[$0.path] }
  }

  // MARK: Models form

  mutating func checkModelsForm(
    _ models: [InputModel], keyRange: SourceRange, module: OutputModule?
  ) {
    let base = stage.baseModel
    var inputs: [(ModelReference, ParameterTable?, SourceRange)] = []
    var listed: [String: SourceRange] = [:]
    for entry in models {
      let isBase = base?.identity == entry.model.identity
      checkTable(entry.parameters, level: .model(isBase: isBase && spec?.base != .ignored))
      if let first = listed[entry.model.identity] {
        bag.report(
          .duplicateModel(entry.model.description), at: entry.model.range,
          notes: [Diagnostic.Note("first listed here", at: first)])
        continue
      }
      listed[entry.model.identity] = entry.model.range
      inputs.append((entry.model, entry.parameters, entry.model.range))
    }
    var baseAdded = false
    if let base, listed[base.identity] == nil {
      inputs.append((base, nil, base.range))
      baseAdded = true
    }
    guard let spec else { return }
    checkArity(
      spec, inputs: inputs.map(\.0), base: spec.base == .ignored ? nil : base, at: keyRange,
      baseAdded: baseAdded)
    let scoped = inputs.map { input in
      RequiredCheckInput(
        model: input.0,
        scopes: ParameterScopes(
          model: input.1, module: module?.parameters, recipe: stage.parameters),
        range: input.2)
    }
    checkRequired(
      spec, inputs: scoped, base: spec.base == .ignored ? nil : base,
      shared: ParameterScopes(module: module?.parameters, recipe: stage.parameters),
      at: keyRange, baseAdded: baseAdded)

    // Every input must have the same number of layers (mergekit makes one slice of them all).
    var counts: [(String, Int)] = []
    for input in inputs {
      if let n = layerCount(input.0) { counts.append((input.0.description, n)) }
    }
    if let first = counts.first, let other = counts.first(where: { $0.1 != first.1 }) {
      bag.report(.layerCountsDiffer(first, other), at: keyRange)
    }
  }

  // MARK: Slices

  mutating func checkSlice(_ slice: OutputSlice, module: OutputModule?) {
    let base = slice.baseModel ?? stage.baseModel
    checkTable(slice.parameters, level: .slice)
    if slice.residualWeight != nil, let r = slice.residualWeight {
      bag.report(.residualWeightIgnored, at: r.range)
    }
    var firstLength: (Int, SourceRange)?
    for source in slice.sources {
      let isBase = base?.identity == source.model.identity && spec?.base != .ignored
      checkTable(source.parameters, level: .model(isBase: isBase))
      guard let range = source.layerRange else { continue }
      if range.start < 0 || range.end < range.start {
        bag.report(.badLayerBounds(range.start, range.end), at: range.range)
        continue
      }
      if range.start == range.end {
        bag.report(.emptyLayerRange, at: range.range)
      }
      if let n = layerCount(source.model), range.end > n {
        bag.report(
          .layerRangePastEnd(range.start, range.end, model: source.model.description, layers: n),
          at: range.range)
      }
      if let (length, firstRange) = firstLength {
        if range.count != length {
          bag.report(
            .sliceLengthsDiffer(range.count, length), at: range.range,
            notes: [Diagnostic.Note("the first source takes \(length) layers here", at: firstRange)]
          )
        }
      } else {
        firstLength = (range.count, range.range)
      }
    }
    guard let spec else { return }
    let inputs = slice.sources.map(\.model)
    var unique: [ModelReference] = []
    var identities = Set<String>()
    for m in inputs where identities.insert(m.identity).inserted { unique.append(m) }
    if unique.count < inputs.count {
      bag.report(.duplicateSource, at: slice.sourcesRange)
    }
    let effectiveBase = spec.base == .ignored ? nil : base
    if let effectiveBase, !identities.contains(effectiveBase.identity) {
      bag.report(
        .baseNotInSlice(effectiveBase.description), at: slice.sourcesRange,
        notes: [Diagnostic.Note("the base model is given here", at: effectiveBase.range)])
    }
    checkArity(spec, inputs: unique, base: effectiveBase, at: slice.sourcesRange, baseAdded: false)
    let scoped = slice.sources.map { source in
      RequiredCheckInput(
        model: source.model,
        scopes: ParameterScopes(
          model: source.parameters, slice: slice.parameters, module: module?.parameters,
          recipe: stage.parameters),
        range: source.range)
    }
    checkRequired(
      spec, inputs: scoped, base: effectiveBase,
      shared: ParameterScopes(
        slice: slice.parameters, module: module?.parameters, recipe: stage.parameters),
      at: slice.sourcesRange, baseAdded: false)
  }

  // MARK: Arity

  mutating func checkArity(
    _ spec: MethodSpec, inputs: [ModelReference], base: ModelReference?, at range: SourceRange,
    baseAdded: Bool
  ) {
    let hasBase = base.map { b in inputs.contains { $0.identity == b.identity } } ?? false
    let count = inputs.count
    let nonBase = count - (hasBase ? 1 : 0)
    var notes: [Diagnostic.Note] = []
    if baseAdded, let base {
      notes.append(
        Diagnostic.Note("the base model '\(base.description)' counts as an input", at: base.range))
    }
    if count < spec.minInputs {
      bag.report(
        .tooFewInputs(spec.name, min: spec.minInputs, max: spec.maxInputs, found: count), at: range,
        notes: notes)
    } else if let max = spec.maxInputs, count > max {
      bag.report(
        .tooManyInputs(spec.name, min: spec.minInputs, max: max, found: count), at: range,
        notes: notes)
    }
    if let min = spec.minNonBase, nonBase < min {
      bag.report(
        .nonBaseCount(spec.name, min: min, max: spec.maxNonBase, found: nonBase), at: range)
    } else if let max = spec.maxNonBase, nonBase > max {
      bag.report(
        .nonBaseCount(spec.name, min: spec.minNonBase ?? 0, max: max, found: nonBase), at: range)
    }
  }

  // MARK: Required parameters

  /// One input of a slice or model list: the model, the tables that can set its parameters,
  /// and where it is written.
  struct RequiredCheckInput {
    var model: ModelReference
    var scopes: ParameterScopes
    var range: SourceRange
  }

  /// Every required parameter is set somewhere it applies: shared ones in a slice, module or
  /// recipe table, per-model ones for each input (the base too when the method merges it).
  mutating func checkRequired(
    _ spec: MethodSpec, inputs: [RequiredCheckInput], base: ModelReference?,
    shared: ParameterScopes, at range: SourceRange, baseAdded: Bool
  ) {
    for p in spec.parameters where p.isRequired {
      if p.scope == .shared {
        guard shared.setting(p.name, scope: .shared) == nil else { continue }
        var notes: [Diagnostic.Note] = []
        if let perModel = inputs.lazy.compactMap({ $0.scopes.model?[p.name] }).first {
          notes.append(
            Diagnostic.Note(
              "'\(p.name)' is given for one model here, where it has no effect",
              at: perModel.range))
        }
        bag.report(
          .missingSharedParameter(p.name, method: spec.name),
          at: stage.mergeMethod?.range ?? range, notes: notes)
        continue
      }
      var reported = Set<String>()
      for input in inputs {
        let isBase = base?.identity == input.model.identity
        if p.scope == .nonBase && isBase { continue }
        if input.scopes.setting(p.name, scope: p.scope) != nil { continue }
        guard reported.insert(input.model.identity).inserted else { continue }
        var notes: [Diagnostic.Note] = []
        if baseAdded && isBase {
          notes.append(
            Diagnostic.Note(
              "mergekit merges the base model as an input of \(spec.name), so it needs '\(p.name)' too"
            ))
        }
        bag.report(
          .missingInputParameter(p.name, method: spec.name, model: input.model.description),
          at: input.range, notes: notes)
      }
    }
  }

  // MARK: Parameter tables

  mutating func checkTable(_ table: ParameterTable?, level: TableLevel) {
    guard let table else { return }
    for entry in table.entries {
      let name = entry.name.value
      guard let spec else {
        // The method is unknown: check the parameter against whichever method takes it.
        if let p = MethodRegistry.specs.lazy.compactMap({ $0.parameter(name) }).first {
          checkValues(entry.setting, parameter: p)
        } else {
          unknownParameterOfAnyMethod(entry.name)
        }
        continue
      }
      guard let p = spec.parameter(name) else {
        unknownParameter(entry.name, spec: spec)
        continue
      }
      switch (level, p.scope) {
      case (.model, .shared):
        bag.report(.sharedParameterPerModel(name, method: spec.name), at: entry.name.range)
      case (.model(isBase: true), .nonBase):
        bag.report(.nonBaseParameterOnBase(name, method: spec.name), at: entry.name.range)
      default: break
      }
      if let unused = p.unused { bag.report(unused, at: entry.name.range) }
      checkValues(entry.setting, parameter: p)
    }
  }

  mutating func unknownParameter(_ name: Located<String>, spec: MethodSpec) {
    var notes: [Diagnostic.Note] = []
    let others = MethodRegistry.methods(taking: name.value)
    if !others.isEmpty {
      notes.append(
        Diagnostic.Note(
          "'\(name.value)' is a parameter of \(others.joined(separator: ", ")), not of \(spec.name)"
        ))
    }
    if spec.parameters.isEmpty {
      notes.append(Diagnostic.Note("\(spec.name) takes no parameters"))
    } else {
      notes.append(
        Diagnostic.Note(
          "\(spec.name) takes: " + spec.parameters.map(\.name).joined(separator: ", ")))
    }
    let suggestion = Suggestion.closest(to: name.value, in: spec.parameters.map(\.name))
    bag.report(
      .unknownParameter(name.value, method: spec.name, suggestion: suggestion),
      at: name.range, notes: notes)
  }

  mutating func unknownParameterOfAnyMethod(_ name: Located<String>) {
    let suggestion = Suggestion.closest(
      to: name.value, in: MethodRegistry.parameterNames.sorted())
    bag.report(.unknownParameterOfAnyMethod(name.value, suggestion: suggestion), at: name.range)
  }

  mutating func checkValues(_ setting: ParameterSetting, parameter p: ParameterSpec) {
    if case .gradient(let values, let range) = setting, values.isEmpty {
      bag.report(.emptyGradient(p.name), at: range)
    }
    if case .conditional(let entries, _) = setting {
      for entry in entries {
        if case .gradient(let values, let range) = entry.value, values.isEmpty {
          bag.report(.emptyGradient(p.name), at: range)
        }
      }
    }
    for s in setting.scalars { checkScalar(s, parameter: p) }
  }

  mutating func checkScalar(_ s: ParameterScalar, parameter p: ParameterSpec) {
    switch p.type {
    case .float, .optionalFloat, .int:
      let number: Double
      switch s.value {
      case .int(let i): number = Double(i)
      case .float(let d): number = d
      case .string(let text):
        guard case .number(let d)? = ParameterEvaluator.convert(s.value, type: .float) else {
          bag.report(.expectedNumber(p.name, found: "a string '\(text)'"), at: s.range)
          return
        }
        bag.report(.quotedNumber(p.name, text), at: s.range)
        number = d
      case .bool(let b):
        bag.report(.expectedNumber(p.name, found: "a boolean '\(b)'"), at: s.range)
        return
      case .null:
        bag.report(.nullParameter(p.name), at: s.range)
        return
      }
      if p.type == .int && number != number.rounded() {
        bag.report(.expectedInteger(p.name, number), at: s.range)
        return
      }
      if !number.isFinite {
        bag.report(.notFinite(p.name), at: s.range)
      } else if !p.validRange.contains(number) {
        bag.report(.outOfRange(p.name, number, p.validRange), at: s.range)
      } else if let advice = p.advice?(number) {
        bag.report(advice, at: s.range)
      }
    case .bool:
      switch s.value {
      case .bool(let b):
        if let advice = p.advice?(b ? 1 : 0) { bag.report(advice, at: s.range) }
      case .int(let i) where i == 0 || i == 1:
        bag.report(.integerAsBool(p.name, i), at: s.range)
      case .string(let text)
      where ["true", "false", "yes", "no", "on", "off", "1", "0"].contains(text.lowercased()):
        bag.report(.quotedBool(p.name, text), at: s.range)
      case .null:
        bag.report(.nullParameter(p.name), at: s.range)
      default:
        bag.report(.expectedBool(p.name, s.value), at: s.range)
      }
    }
  }
}

// MARK: - Messages

extension Diagnostic.Message {
  fileprivate static let notUTF8 = Self("not-utf8", "the recipe is not valid UTF-8 text")
  fileprivate static let residualWeightIgnored = Self(
    "residual-weight-ignored", .warning,
    "'residual_weight' has no effect: mergekit accepts it but never uses it")
  fileprivate static let emptyLayerRange = Self(
    "empty-layer-range", .warning, "this layer range is empty and contributes no layers")
  fileprivate static let duplicateSource = Self(
    "duplicate-source",
    "a slice lists the same model twice; mergekit merges each model once per tensor")
  fileprivate static func cannotReadRecipe(_ reason: String) -> Self {
    Self("cannot-read-recipe", "cannot read the recipe: \(reason)")
  }
  fileprivate static func needsBaseModel(_ method: String) -> Self {
    Self("needs-base-model", "\(method) needs a base model; add 'base_model: PATH'")
  }
  fileprivate static func baseModelIgnored(_ method: String, _ base: String) -> Self {
    Self(
      "base-model-ignored", .warning,
      "\(method) has no base model: mergekit merges '\(base)' as one more input")
  }
  fileprivate static func unknownMethod(_ name: String, suggestion: String?) -> Self {
    if let suggestion {
      return Self("unknown-method", "unknown merge method '\(name)'; did you mean '\(suggestion)'?")
    }
    return Self("unknown-method", "unknown merge method '\(name)'")
  }
  fileprivate static func integerDtype(_ key: String) -> Self {
    Self(
      "integer-dtype", "'\(key)' must be a floating-point dtype; 'int64' cannot hold merged weights"
    )
  }
  fileprivate static func unknownDtype(_ name: String, key: String, suggestion: String?) -> Self {
    if let suggestion {
      return Self("unknown-dtype", "unknown \(key) '\(name)'; did you mean '\(suggestion)'?")
    }
    return Self("unknown-dtype", "unknown \(key) '\(name)'")
  }
  fileprivate static func badAdapter(_ error: ModelError, written: String) -> Self {
    switch error {
    case .notFound:
      return Self("adapter-not-found", "LoRA adapter folder '\(written)' does not exist")
    case .notCached: return Self("adapter-not-cached", error.description)
    case .hub: return Self("hub-unavailable", error.description)
    default: return Self("unusable-adapter", error.description)
    }
  }
  fileprivate static func mixedArchitectures(
    _ model: String, _ architecture: String, _ other: String
  )
    -> Self
  {
    Self(
      "mixed-architectures",
      "'\(model)' is \(architecture), not \(other) as the model before it; mixing architectures needs --allow-crimes (as in mergekit)"
    )
  }
  fileprivate static func fromWorkingDirectory(_ path: String) -> Self {
    Self(
      "path-from-working-directory", .warning,
      "'\(path)' is read from the working directory, as mergekit reads it")
  }
  fileprivate static func revisionIgnored(_ revision: String) -> Self {
    Self(
      "revision-ignored", .warning, "revision '\(revision)' is ignored: the model is a local folder"
    )
  }
  fileprivate static func badModel(_ error: ModelError, written: String) -> Self {
    switch error {
    case .notFound: return Self("model-not-found", "model folder '\(written)' does not exist")
    case .notCached: return Self("model-not-cached", error.description)
    case .hub: return Self("hub-unavailable", error.description)
    default: return Self("unusable-model", error.description)
    }
  }
  fileprivate static func badWeights(_ error: ModelError) -> Self {
    Self("bad-weights", "the model's weights cannot be used: \(error.description)")
  }
  fileprivate static func duplicateModel(_ model: String) -> Self {
    Self(
      "duplicate-model",
      "'\(model)' is listed twice; list each model once (mergekit refuses duplicate merge inputs)"
    )
  }
  fileprivate static func layerCountsDiffer(_ a: (String, Int), _ b: (String, Int)) -> Self {
    Self(
      "layer-counts-differ",
      "the models have different layer counts ('\(a.0)' has \(a.1), '\(b.0)' has \(b.1)); use 'slices' to say which layers to merge"
    )
  }
  fileprivate static func badLayerBounds(_ start: Int, _ end: Int) -> Self {
    Self(
      "bad-layer-bounds",
      "layer_range [\(start), \(end)] is not a range of layers; write [start, end] with 0 ≤ start ≤ end"
    )
  }
  fileprivate static func layerRangePastEnd(_ start: Int, _ end: Int, model: String, layers: Int)
    -> Self
  {
    Self(
      "layer-range-past-end",
      "layer_range [\(start), \(end)] goes past the last layer of '\(model)', which has \(layers) layers (0 to \(layers - 1))"
    )
  }
  fileprivate static func sliceLengthsDiffer(_ found: Int, _ first: Int) -> Self {
    Self(
      "slice-lengths-differ",
      "all sources of a slice must take the same number of layers: this one takes \(found), the first takes \(first)"
    )
  }
  fileprivate static func baseNotInSlice(_ base: String) -> Self {
    Self("base-not-in-slice", "the base model '\(base)' must be one of the slice's sources")
  }
  fileprivate static func tooFewInputs(_ method: String, min: Int, max: Int?, found: Int) -> Self {
    Self("too-few-inputs", "\(method) needs \(models(min, max)), found \(found)")
  }
  fileprivate static func tooManyInputs(_ method: String, min: Int, max: Int, found: Int) -> Self {
    Self(
      "too-many-inputs",
      "\(method) merges \(models(min, max)) (the base model included), found \(found)")
  }
  fileprivate static func nonBaseCount(_ method: String, min: Int, max: Int?, found: Int) -> Self {
    Self(
      "non-base-count",
      "\(method) needs \(models(min, max)) besides the base model, found \(found)")
  }
  /// "at least 1 model", "exactly 2 models", "2 to 3 models".
  private static func models(_ min: Int, _ max: Int?) -> String {
    let noun = (max ?? min) == 1 ? "model" : "models"
    guard let max else { return "at least \(min) \(noun)" }
    return min == max ? "exactly \(min) \(noun)" : "\(min) to \(max) \(noun)"
  }
  fileprivate static func missingSharedParameter(_ name: String, method: String) -> Self {
    Self(
      "missing-shared-parameter",
      "\(method) needs parameter '\(name)'; set it under the recipe's 'parameters'")
  }
  fileprivate static func missingInputParameter(_ name: String, method: String, model: String)
    -> Self
  {
    Self(
      "missing-input-parameter",
      "\(method) needs parameter '\(name)' for each model, and '\(model)' has none")
  }
  fileprivate static func nullParameter(_ name: String) -> Self {
    Self("null-parameter", "parameter '\(name)' has no value")
  }
  fileprivate static func sharedParameterPerModel(_ name: String, method: String) -> Self {
    Self(
      "shared-parameter-per-model", .warning,
      "'\(name)' has no effect here: \(method) takes one '\(name)' for the whole merge, so set it under the recipe's 'parameters'"
    )
  }
  fileprivate static func nonBaseParameterOnBase(_ name: String, method: String) -> Self {
    Self(
      "non-base-parameter-on-base", .warning,
      "'\(name)' has no effect on the base model of \(method)")
  }
  fileprivate static func unknownParameter(_ name: String, method: String, suggestion: String?)
    -> Self
  {
    if let suggestion {
      return Self(
        "unknown-parameter",
        "unknown parameter '\(name)' for \(method); did you mean '\(suggestion)'?")
    }
    return Self("unknown-parameter", "unknown parameter '\(name)' for \(method)")
  }
  fileprivate static func unknownParameterOfAnyMethod(_ name: String, suggestion: String?) -> Self {
    if let suggestion {
      return Self("unknown-parameter", "unknown parameter '\(name)'; did you mean '\(suggestion)'?")
    }
    return Self("unknown-parameter", "unknown parameter '\(name)': no merge method takes it")
  }
  fileprivate static func emptyGradient(_ name: String) -> Self {
    Self("empty-gradient", .warning, "'\(name)' is an empty list, which mergekit treats as not set")
  }
  fileprivate static func expectedNumber(_ name: String, found: String) -> Self {
    Self("expected-number", "'\(name)' must be a number, found \(found)")
  }
  fileprivate static func quotedNumber(_ name: String, _ text: String) -> Self {
    Self(
      "quoted-number", .warning,
      "'\(name)' is the quoted string '\(text)'; it is read as the number \(text), but write it without quotes"
    )
  }
  fileprivate static func expectedInteger(_ name: String, _ value: Double) -> Self {
    Self("expected-integer", "'\(name)' must be an integer, found \(format(value))")
  }
  fileprivate static func notFinite(_ name: String) -> Self {
    Self("not-finite", "'\(name)' must be a finite number")
  }
  fileprivate static func outOfRange(_ name: String, _ value: Double, _ range: ValueRange) -> Self {
    Self("out-of-range", "'\(name)' must be in \(range.description), found \(format(value))")
  }
  fileprivate static func integerAsBool(_ name: String, _ value: Int) -> Self {
    Self(
      "integer-as-bool", .warning,
      "'\(name)' is the number \(value); it is read as \(value == 1 ? "true" : "false"), but write true or false"
    )
  }
  fileprivate static func quotedBool(_ name: String, _ text: String) -> Self {
    Self(
      "quoted-bool", .warning,
      "'\(name)' is the quoted string '\(text)'; write true or false without quotes")
  }
  fileprivate static func expectedBool(_ name: String, _ value: YAMLValue) -> Self {
    Self("expected-boolean", "'\(name)' must be true or false, found \(value.kindDescription)")
  }
}
