import MergeModel
import MergeRecipe

/// Turns a checked stage into a ``MergePlan``: which input tensors feed each output tensor and
/// every parameter evaluated for it, as mergekit 0.1.5 plans a merge.
///
/// - `models:` becomes one slice of every model over all its layers, with the base model
///   appended when it is not listed.
/// - Each slice contributes its layers in order; a layer at offset `i` of a slice of `n`
///   layers has gradient position `t = i/(n−1)` (`t = 1` when `n = 1`).
/// - Tensors before the layers (embeddings) come from the first slice's sources, tensors after
///   them (final norm, lm_head) from the last slice's, with `t = 0`.
/// - A model's own parameters win over its slice's, the slice's over the recipe's.
/// - `lm_head.weight` missing from a tied-embedding model is read from its embedding matrix, as
///   mergekit's `tied_names` do; missing from every input, it is not written.
///
/// Reads safetensors headers only.
public struct Resolver {
  private var bag: DiagnosticBag
  private let policy: DiagnosticPolicy
  private let stage: MergeConfiguration
  private let method: any MergeMethod.Type
  private var spec: MethodSpec { method.spec }
  private var models: [ResolvedModel] = []
  private var modelIndex: [String: Int] = [:]
  /// Each model's tensor names by layer, in data order (built once per model: looking them up
  /// per layer by scanning every tensor was quadratic).
  private var namesByLayer: [Int: [Int: [String]]] = [:]
  /// The output's tokenizer, when the recipe has a tokenizer section or a chat template.
  private var vocabulary: VocabularyPlan?
  /// The stage's one module (`modules: {default: …}`), whose models or slices and parameters
  /// stand for the stage's own.
  private var module: OutputModule?

  /// Resolves `stage` of a recipe that checked without errors.
  ///
  /// - Parameters:
  ///   - report: the check report (its folders and weights are reused).
  ///   - file: the recipe's path, for diagnostics.
  public static func resolve(
    stage: MergeConfiguration, report: CheckReport, file: String,
    policy: DiagnosticPolicy = DiagnosticPolicy()
  ) -> (plan: MergePlan?, diagnostics: [Diagnostic]) {
    guard let name = stage.mergeMethod?.value, let method = MethodRegistry.method(named: name)
    else {
      return (nil, [])
    }
    var resolver = Resolver(
      bag: DiagnosticBag(file: file), policy: policy, stage: stage, method: method)
    let plan = resolver.run(report: report)
    return (resolver.blocked ? nil : plan, resolver.bag.diagnostics)
  }

  private init(
    bag: DiagnosticBag, policy: DiagnosticPolicy, stage: MergeConfiguration,
    method: any MergeMethod.Type
  ) {
    self.bag = bag
    self.policy = policy
    self.stage = stage
    self.method = method
  }

  /// Whether the findings so far hold an error under the policy (one that the policy makes a
  /// warning does not stop resolution).
  private var blocked: Bool { policy.hasErrors(bag.diagnostics) }

  /// A slice after normalization: sources with layer ranges and the scopes of parameters.
  private struct Slice {
    var sources: [(model: Int, start: Int, parameters: ParameterTable?, range: SourceRange)]
    var parameters: ParameterTable?
    var length: Int
    var base: Int?
    var range: SourceRange

    /// The position in `sources` of each model's source (each model is a source once).
    var sourceIndex: [Int: Int] {
      Dictionary(sources.enumerated().map { ($1.model, $0) }, uniquingKeysWith: { a, _ in a })
    }
  }

  private mutating func model(_ reference: ModelReference, report: CheckReport) -> Int? {
    if let i = modelIndex[reference.identity] { return i }
    var resolver = ModelResolver(
      baseDirectory: FileSystem.directoryName(bag.file ?? "."), hubCache: report.hubCache)
    resolver.stages = report.stageFolders
    let location = resolver.location(of: reference.model)
    let path = location.path
    guard let folder = report.folders[path], let weights = report.weights[path] else {
      bag.report(.unavailableModel(reference.description), at: reference.range)
      return nil
    }
    var resolved = ResolvedModel(reference: reference, folder: folder, weights: weights)
    if case .hub(let repository, _, _) = location {
      resolved.hubRepository = repository
    }
    if let lora = reference.lora, let source = report.taskVectors[resolver.location(of: lora).path]
    {
      resolved.taskVector = source
    } else if let lora = reference.lora {
      guard let adapter = report.adapters[resolver.location(of: lora).path] else {
        bag.report(.unavailableModel(reference.description), at: reference.range)
        return nil
      }
      resolved.adapter = adapter
    }
    models.append(resolved)
    modelIndex[reference.identity] = models.count - 1
    return models.count - 1
  }

  private mutating func run(report: CheckReport) -> MergePlan? {
    if let modules = stage.modules?.value {
      guard let only = singleModule(modules, report: report) else { return nil }
      module = only
    }
    let slices = self.slices(report: report)
    guard !blocked, !slices.isEmpty else { return nil }
    // The output takes the first model's (the base's) side files: each must be copyable.
    if let donor = models.first {
      for problem in donor.folder.sideFileProblems() {
        bag.report(.unusableSideFile(problem), at: donor.reference.range)
      }
      if blocked { return nil }
    }
    vocabulary = vocabularyPlan(report: report)
    guard !blocked else { return nil }
    let (tensors, layerSources) = tensorPlans(slices)
    guard !blocked else { return nil }
    var plan = MergePlan(
      method: method, models: models, tensors: tensors, outputLayerCount: layerSources.count,
      layerSources: layerSources, donor: 0,
      inputDType: stage.dtype.flatMap { DType(recipeName: $0.value) },
      outDType: stage.outDtype.flatMap { DType(recipeName: $0.value) })
    plan.vocabulary = vocabulary
    return plan
  }

  /// The module of a `modules:` recipe, when it is the one module of a single-module
  /// architecture (mergekit names it `default`); nil after reporting each module that names
  /// something else (the parts of a multi-module model, which merge cannot split yet).
  private mutating func singleModule(_ modules: [OutputModule], report: CheckReport)
    -> OutputModule?
  {
    if modules.count == 1, let only = modules.first, only.name.value == Self.defaultModule {
      return only
    }
    var architecture: String?
    if let first = stage.referencedModels.first, let m = model(first, report: report) {
      architecture = models[m].folder.config.architecture
    }
    for module in modules where module.name.value != Self.defaultModule || modules.count > 1 {
      bag.report(
        .unsplittableModule(module.name.value, architecture: architecture),
        at: module.name.range)
    }
    return nil
  }

  /// The name mergekit gives the one module of a single-module architecture.
  static let defaultModule = "default"

  /// The output's tokenizer, when the recipe has `tokenizer_source`, `tokenizer:` or
  /// `chat_template` (without a tokenizer section, the donor's tokenizer with the template, as
  /// mergekit re-saves it); nil after reporting why it cannot be built.
  private mutating func vocabularyPlan(report: CheckReport) -> VocabularyPlan? {
    let config = stage.tokenizer
    let source = stage.tokenizerSource ?? config?.source ?? config.map { .union($0.range) }
    guard source != nil || stage.chatTemplate != nil, !models.isEmpty else { return nil }
    let at = source?.range ?? stage.chatTemplate?.range
    var files: [TokenizerFiles] = []
    for m in models.indices {
      do {
        files.append(try tokenizer(of: m))
      } catch {
        bag.report(.unusableTokenizer(error, model: models[m].reference.description), at: at)
        return nil
      }
    }
    var output: OutputVocabulary
    switch source {
    case .union?:
      let limits = models.map { $0.folder.config.json["vocab_size"]?.intValue }
      output = OutputVocabulary.union(base: files[0], models: files, limits: limits)
    case .model(let reference)?:
      guard let m = model(reference, report: report) else { return nil }
      if m >= files.count {
        do {
          files.append(try tokenizer(of: m))
        } catch {
          bag.report(.unusableTokenizer(error, model: reference.description), at: reference.range)
          return nil
        }
      }
      output = OutputVocabulary(source: files[m])
    case .base?, nil:
      output = OutputVocabulary(source: files[0])
    }
    output = output.adding(config?.tokens.map(\.token.value) ?? [])
    var rowsOfModel: [Int: [String: Int]] = [:]
    for (m, f) in files.enumerated() {
      let limit = models[m].folder.config.json["vocab_size"]?.intValue ?? f.size
      rowsOfModel[m] = f.vocabulary.filter { $0.value < limit }
      let beyond = f.vocabulary.filter { $0.value >= limit }.sorted { $0.value < $1.value }
      if !beyond.isEmpty {
        bag.report(
          .tokensBeyondVocabulary(
            models[m].reference.description, limit: limit, tokens: beyond.map(\.key)),
          at: models[m].reference.range)
      }
    }
    var choices: [String: VocabularyPlan.Choice] = [:]
    for entry in config?.tokens ?? [] {
      guard let choice = tokenChoice(entry, files: &files, report: report) else { continue }
      choices[entry.token.value] = choice
    }
    var template = output.source.template
    if let setting = stage.chatTemplate {
      switch ChatTemplate.resolve(setting.value, models: files) {
      case .success(let resolved): template = resolved ?? template
      case .failure(let problem): bag.report(.badChatTemplate(problem), at: setting.range)
      }
    }
    let size = output.size
    let pad = config?.padToMultipleOf?.value ?? 0
    let padded = pad > 0 && size % pad != 0 ? (size / pad + 1) * pad : size
    return VocabularyPlan(
      vocabulary: output, paddedSize: padded, template: template, rowsOfModel: rowsOfModel,
      choices: choices, base: stage.baseModel == nil ? nil : 0)
  }

  /// For vocabulary tensors that differ without a tokenizer section: the tokens one model has
  /// and the other lacks, and what to write.
  private func vocabularyNotes(_ name: String, _ a: Int, _ b: Int) -> [Diagnostic.Note] {
    guard vocabulary == nil, VocabularyPlan.isVocabularyTensor(name),
      let ta = try? tokenizer(of: a), let tb = try? tokenizer(of: b)
    else { return [] }
    func only(_ x: TokenizerFiles, _ y: TokenizerFiles) -> [String] {
      x.vocabulary.filter { y.vocabulary[$0.key] == nil }.sorted { $0.value < $1.value }.map(\.key)
    }
    var notes: [Diagnostic.Note] = []
    for (m, tokens) in [(b, only(tb, ta)), (a, only(ta, tb))] where !tokens.isEmpty {
      let shown = tokens.prefix(8).map { "'\($0)'" }.joined(separator: ", ")
      let more = tokens.count > 8 ? " and \(tokens.count - 8) more" : ""
      notes.append(
        Diagnostic.Note(
          "the vocabularies differ: '\(models[m].reference.description)' has \(tokens.count) token\(tokens.count == 1 ? "" : "s") the other lacks (\(shown)\(more))"
        ))
    }
    if !notes.isEmpty {
      notes.append(
        Diagnostic.Note(
          "add 'tokenizer_source: union' to keep every model's tokens (their rows laid out in one vocabulary), or 'tokenizer_source: base' to keep the base's vocabulary only"
        ))
    }
    return notes
  }

  /// Model `m`'s tokenizer: from its folder, or from the Hub snapshot it was read from.
  private func tokenizer(of m: Int) throws(ModelError) -> TokenizerFiles {
    let folder = models[m].folder
    if folder.produced != nil {
      return try TokenizerFiles(folder: folder.path) { name throws(ModelError) in
        folder.sideFiles().contains(name) ? try folder.content(of: name).read() : nil
      }
    }
    guard let remote = models[m].folder.remote else {
      return try TokenizerFiles(folder: models[m].path)
    }
    return try TokenizerFiles(folder: remote.path) { name throws(ModelError) in
      remote.smallFiles[name]
    }
  }

  /// One `tokens:` entry as the rows it names; nil (reported) when it names what is not there.
  private mutating func tokenChoice(
    _ entry: TokenEmbedding, files: inout [TokenizerFiles], report: CheckReport
  ) -> VocabularyPlan.Choice? {
    let force = entry.force?.value ?? false
    switch entry.source {
    case nil:
      return nil
    case .zero?:
      return VocabularyPlan.Choice(model: nil, modelRow: nil, force: force)
    case .model(let reference)?:
      guard let m = model(reference, report: report) else { return nil }
      return VocabularyPlan.Choice(model: m, modelRow: nil, force: force)
    case .modelToken(let reference, let id, let token)?:
      guard let m = model(reference, report: report) else { return nil }
      if let id { return VocabularyPlan.Choice(model: m, modelRow: id.value, force: force) }
      while files.count <= m {
        guard let f = try? tokenizer(of: files.count) else { return nil }
        files.append(f)
      }
      guard let token, let row = files[m].vocabulary[token.value] else {
        bag.report(
          .tokenNotInModel(
            entry.token.value, token: token?.value ?? "", model: reference.description),
          at: token?.range ?? entry.token.range)
        return nil
      }
      return VocabularyPlan.Choice(model: m, modelRow: row, force: force)
    }
  }

  /// The stage's slices; `models:` is one slice of every model over all its layers, with the
  /// base appended when it is not listed.
  private mutating func slices(report: CheckReport) -> [Slice] {
    let baseReference = stage.baseModel
    var baseIndex: Int?
    // Models in recipe order, the base first so that it is the config donor.
    if let baseReference { baseIndex = model(baseReference, report: report) }
    if let list = stage.models ?? module?.models {
      var sources: [(model: Int, start: Int, parameters: ParameterTable?, range: SourceRange)] = []
      var seen = Set<Int>()
      for entry in list.value {
        guard let m = model(entry.model, report: report) else { continue }
        guard seen.insert(m).inserted else { continue }
        sources.append((m, 0, entry.parameters, entry.model.range))
      }
      if let b = baseIndex, !seen.contains(b) {
        sources.append((b, 0, nil, baseReference?.range ?? list.range))
      }
      let lengths = sources.map {
        models[$0.model].folder.config.layerCount
          ?? TensorNaming.layerCount(of: models[$0.model].weights.tensors.map(\.name))
      }
      return [
        Slice(
          sources: sources, parameters: nil, length: lengths.first ?? 0,
          base: spec.base == .ignored ? nil : baseIndex, range: list.range)
      ]
    }
    var slices: [Slice] = []
    for s in (stage.slices ?? module?.slices)?.value ?? [] {
      var sources: [(model: Int, start: Int, parameters: ParameterTable?, range: SourceRange)] = []
      var seen = Set<Int>()
      for src in s.sources {
        guard let m = model(src.model, report: report), seen.insert(m).inserted else { continue }
        sources.append((m, src.layerRange?.start ?? 0, src.parameters, src.range))
      }
      var base = baseIndex
      if let b = s.baseModel { base = model(b, report: report) }
      slices.append(
        Slice(
          sources: sources, parameters: s.parameters,
          length: s.sources.first?.layerRange?.count ?? 0,
          base: spec.base == .ignored ? nil : base, range: s.sourcesRange))
    }
    return slices
  }

  /// Every output tensor's plan, in output order (the first slice's tensors before the layers,
  /// each slice's layers, the last slice's tensors after them), and the model and layer each
  /// output layer comes from.
  private mutating func tensorPlans(_ slices: [Slice]) -> (
    tensors: [TensorPlan], layerSources: [(model: Int, layer: Int)]
  ) {
    guard let first = slices.first, let last = slices.last else { return ([], []) }
    var tensors: [TensorPlan] = []
    var layerSources: [(model: Int, layer: Int)] = []
    for name in outsideNames(role: .pre, slice: first) {
      if let plan = tensorPlan(
        name: name, inputNames: first.sources.map { _ in name }, role: .pre, slice: first, t: 0)
      {
        tensors.append(plan)
      }
    }
    // Two names can renumber to one output name (`layers.0.w` and `layers.00.w`).
    var outputNames: [String: String] = [:]
    for slice in slices {
      for offset in 0..<slice.length {
        let t = slice.length > 1 ? Double(offset) / Double(slice.length - 1) : 1
        guard let lead = slice.sources.first else { continue }
        let leadLayer = lead.start + offset
        let outputLayer = layerSources.count
        layerSources.append((lead.model, leadLayer))
        for leadName in names(of: lead.model, layer: leadLayer) {
          let output = Self.renumber(leadName, to: outputLayer)
          if let first = outputNames.updateValue(leadName, forKey: output) {
            bag.report(.duplicateOutput(output, first, leadName), at: slice.range)
            continue
          }
          let inputNames = slice.sources.map { Self.renumber(leadName, to: $0.start + offset) }
          if let plan = tensorPlan(
            name: output, inputNames: inputNames, role: .layer(outputLayer), slice: slice, t: t)
          {
            tensors.append(plan)
          }
        }
      }
    }
    for name in outsideNames(role: .post, slice: last) {
      if let plan = tensorPlan(
        name: name, inputNames: last.sources.map { _ in name }, role: .post, slice: last, t: 0)
      {
        tensors.append(plan)
      }
    }
    return (tensors, layerSources)
  }

  /// The tensors of model `model` in layer `layer`, in data order.
  private mutating func names(of model: Int, layer: Int) -> [String] {
    if let byLayer = namesByLayer[model] { return byLayer[layer] ?? [] }
    var byLayer: [Int: [String]] = [:]
    for t in models[model].weights.tensors {
      if let l = TensorNaming.layerIndex(of: t.name) { byLayer[l, default: []].append(t.name) }
    }
    namesByLayer[model] = byLayer
    return byLayer[layer] ?? []
  }

  /// Non-layer tensors of a role, in the data order of the slice's first source, then any
  /// that only later sources have.
  private func outsideNames(role: TensorRole, slice: Slice) -> [String] {
    var names: [String] = []
    var seen = Set<String>()
    for source in slice.sources {
      for t in models[source.model].weights.tensors where TensorNaming.role(of: t.name) == role {
        if seen.insert(t.name).inserted { names.append(t.name) }
      }
    }
    return names
  }

  /// `name` with its layer index replaced by `layer`.
  static func renumber(_ name: String, to layer: Int) -> String {
    // Over the UTF-8 bytes: it runs for every input of every layer tensor, and splitting into
    // Strings took ~1.3 ms of a 75-tensor recipe's 10 ms compile.
    let bytes = name.utf8
    var start = bytes.startIndex
    var first = true
    while let dot = bytes[start...].firstIndex(of: UInt8(ascii: ".")) {
      // A part between two dots (never the first or the last) of ASCII digits only.
      if !first, dot > start, bytes[start..<dot].allSatisfy({ (0x30...0x39).contains($0) }) {
        return String(name[..<start]) + String(layer) + String(name[dot...])
      }
      first = false
      start = bytes.index(after: dot)
    }
    return name
  }

  private mutating func tensorPlan(
    name: String, inputNames: [String], role: TensorRole, slice: Slice, t: Double
  ) -> TensorPlan? {
    var inputs: [TensorInput] = []
    var baseInput: Int?
    var missing: [(Int, String)] = []
    for (source, inputName) in zip(slice.sources, inputNames) {
      let weights = models[source.model].weights
      var resolvedName = inputName
      if weights.info(resolvedName) == nil, TensorNaming.isOutputHead(inputName),
        let tied = Self.tiedEmbedding(in: weights)
      {
        resolvedName = tied
      }
      guard var info = weights.info(resolvedName) else {
        missing.append((source.model, inputName))
        continue
      }
      var adapted: InputAdapter?
      if let tv = models[source.model].taskVector, let entry = tv.entries[resolvedName] {
        adapted = .taskVector(sparse: entry.sparse)
      }
      if let adapter = models[source.model].adapter {
        if let delta = adapter.deltas[resolvedName] {
          adapted = .delta(delta)
        } else if let stored = adapter.replacements[resolvedName],
          let storedInfo = adapter.weights.info(stored)
        {
          adapted = .replaced(by: stored)
          info.dtype = storedInfo.dtype
          info.dataRange = storedInfo.dataRange
        }
      }
      if source.model == slice.base { baseInput = inputs.count }
      inputs.append(
        TensorInput(model: source.model, tensor: resolvedName, info: info, adapter: adapted))
    }
    if !missing.isEmpty {
      // An output head that no input has is left out (tied embeddings).
      if TensorNaming.isOutputHead(name) && inputs.isEmpty { return nil }
      for (m, n) in missing {
        bag.report(
          .missingTensor(n, model: models[m].reference.description), at: models[m].reference.range)
      }
      return nil
    }
    guard var first = inputs.first else { return nil }
    // With a tokenizer section, each vocabulary tensor's rows are laid out in the output
    // vocabulary (models may have different vocabularies: only the columns must agree).
    if let vocabulary, VocabularyPlan.isVocabularyTensor(name),
      inputs.allSatisfy({ $0.info.shape.count == 2 && $0.info.shape[1] == first.info.shape[1] })
    {
      let rows = inputs.map { $0.info.shape[0] }
      for (token, choice) in vocabulary.choices.sorted(by: { $0.key < $1.key }) {
        guard let m = choice.model else { continue }
        // The row must come from a tensor this merge reads (mergekit fails the merge there).
        guard let i = inputs.firstIndex(where: { $0.model == m }) else {
          bag.report(
            .tokenSourceNotMerged(token, model: models[m].reference.description, tensor: name),
            at: stage.tokenizer?.range)
          return nil
        }
        guard let r = choice.modelRow, r >= rows[i] || r < 0 else { continue }
        bag.report(
          .tokenRowOutOfRange(
            token, row: r, tensor: name, rows: rows[i], model: models[m].reference.description),
          at: stage.tokenizer?.range)
        return nil
      }
      let alignments = vocabulary.alignments(models: inputs.map(\.model), rows: rows)
      for i in inputs.indices { inputs[i].alignment = alignments[i] }
      first.info.shape[0] = vocabulary.paddedSize
      for i in inputs.indices { inputs[i].info.shape = first.info.shape }
    }
    for input in inputs.dropFirst() where input.info.shape != first.info.shape {
      bag.report(
        .shapeMismatch(
          name, models[first.model].reference.description, first.info.shape,
          models[input.model].reference.description, input.info.shape),
        at: slice.range,
        notes: vocabularyNotes(name, first.model, input.model))
      return nil
    }
    guard
      let (shared, perInput) = parameters(
        for: name, inputs: inputs, base: baseInput, slice: slice, t: t)
    else { return nil }
    let promoted = Self.promoted(inputs.map(\.info.dtype))
    let inputDType = stage.dtype.flatMap { DType(recipeName: $0.value) }
    let computed = inputDType ?? promoted
    let output = stage.outDtype.flatMap { DType(recipeName: $0.value) } ?? computed
    let plan = TensorPlan(
      name: name, shape: first.info.shape, role: role, inputs: inputs, baseIndex: baseInput,
      shared: shared, perInput: perInput, t: t, inputDType: inputDType,
      outputDType: first.info.dtype.isFloatingPoint ? output : first.info.dtype, origin: slice.range
    )
    for var finding in method.validate(plan) {
      finding.file = bag.file
      finding.range = finding.range ?? plan.origin
      bag.append(finding)
    }
    return plan
  }

  /// Every parameter of the method evaluated for tensor `name`, shared and per input, or nil
  /// (with an error) when a required one has no value that applies.
  private mutating func parameters(
    for name: String, inputs: [TensorInput], base: Int?, slice: Slice, t: Double
  ) -> (shared: [String: BoundParameter], perInput: [[String: BoundParameter]])? {
    var shared: [String: BoundParameter] = [:]
    var perInput = [[String: BoundParameter]](repeating: [:], count: inputs.count)
    for p in spec.parameters where p.scope == .shared {
      let scopes = ParameterScopes(
        slice: slice.parameters, module: module?.parameters, recipe: stage.parameters)
      guard let v = ParameterEvaluator.resolve(p, scopes: scopes, tensor: name, t: t) else {
        bag.report(.unresolvedParameter(p.name, tensor: name), at: stage.mergeMethod?.range)
        return nil
      }
      shared[p.name] = v
    }
    let sourceIndex = slice.sourceIndex
    for p in spec.parameters where p.scope != .shared {
      for (i, input) in inputs.enumerated() where p.scope == .input || i != base {
        let source = sourceIndex[input.model].map { slice.sources[$0] }
        let scopes = ParameterScopes(
          model: source?.parameters, slice: slice.parameters, module: module?.parameters,
          recipe: stage.parameters)
        guard let v = ParameterEvaluator.resolve(p, scopes: scopes, tensor: input.tensor, t: t)
        else {
          bag.report(
            .unresolvedInputParameter(
              p.name, tensor: input.tensor, model: models[input.model].reference.description),
            at: source?.range ?? slice.range)
          return nil
        }
        perInput[i][p.name] = v
      }
    }
    return (shared, perInput)
  }

  /// The embedding matrix an absent output head is tied to.
  static func tiedEmbedding(in weights: ModelWeights) -> String? {
    for name in [
      "model.embed_tokens.weight", "transformer.wte.weight", "embed_tokens.weight",
      "gpt_neox.embed_in.weight", "model.language_model.embed_tokens.weight",
    ] where weights.info(name) != nil {
      return name
    }
    return nil
  }

  /// torch's type promotion over floating dtypes.
  static func promoted(_ dtypes: [DType]) -> DType {
    guard var result = dtypes.first else { return .float32 }
    for d in dtypes.dropFirst() where d != result {
      let rank: (DType) -> Int = {
        switch $0 {
        case .float64: return 4
        case .float32: return 3
        case .float16, .bfloat16: return 2
        default: return 1
        }
      }
      if rank(d) == 2 && rank(result) == 2 {
        result = .float32
      } else if rank(d) > rank(result) {
        result = d
      }
    }
    return result
  }
}

extension Diagnostic.Message {
  fileprivate static func unusableTokenizer(_ error: ModelError, model: String) -> Self {
    Self(
      "unusable-tokenizer",
      "the output's tokenizer is built from the models' tokenizers, and '\(model)''s cannot be read: \(error.description)"
    )
  }
  fileprivate static func tokensBeyondVocabulary(_ model: String, limit: Int, tokens: [String])
    -> Self
  {
    let shown = tokens.prefix(8).map { "'\($0)'" }.joined(separator: ", ")
    return Self(
      "tokens-beyond-vocab-size", .warning,
      "the tokenizer of '\(model)' has \(tokens.count) token\(tokens.count == 1 ? "" : "s") with ids at or past its vocab_size \(limit) (\(shown)\(tokens.count > 8 ? ", …" : "")); the model has no rows for them, so they count as tokens it lacks"
    )
  }
  fileprivate static func tokenSourceNotMerged(_ token: String, model: String, tensor: String)
    -> Self
  {
    Self(
      "token-source-not-merged",
      "the row for '\(token)' comes from '\(model)', which is not one of the models merged into '\(tensor)'; list it among the models"
    )
  }
  fileprivate static func tokenRowOutOfRange(
    _ token: String, row: Int, tensor: String, rows: Int, model: String
  ) -> Self {
    Self(
      "token-row-out-of-range",
      "the row for '\(token)' is row \(row) of '\(model)', whose '\(tensor)' has \(rows) rows")
  }
  fileprivate static func badChatTemplate(_ problem: ChatTemplate.Problem) -> Self {
    Self("bad-chat-template", "chat_template: \(problem.description)")
  }
  fileprivate static func tokenNotInModel(_ entry: String, token: String, model: String) -> Self {
    Self(
      "token-not-in-model",
      "the row for '\(entry)' comes from token '\(token)' of '\(model)', which its tokenizer does not have"
    )
  }
  fileprivate static func unsplittableModule(_ name: String, architecture: String?) -> Self {
    Self(
      "unsupported-module",
      "module '\(name)': merge cannot split \(architecture ?? "this architecture") into modules yet; it merges single-module models, whose one module is 'default' (or use 'models' or 'slices')"
    )
  }
  fileprivate static func unusableSideFile(_ error: ModelError) -> Self {
    Self(
      "unusable-side-file", "the output copies this model's tokenizer files: \(error.description)")
  }
  fileprivate static func duplicateOutput(_ name: String, _ a: String, _ b: String) -> Self {
    Self(
      "duplicate-output-tensor",
      "two output tensors would be named '\(name)', from input tensors '\(a)' and '\(b)'")
  }
  fileprivate static func unavailableModel(_ model: String) -> Self {
    Self("unavailable-model", "model '\(model)' could not be opened")
  }
  fileprivate static func missingTensor(_ tensor: String, model: String) -> Self {
    Self("missing-tensor", "model '\(model)' has no tensor '\(tensor)'")
  }
  fileprivate static func shapeMismatch(
    _ tensor: String, _ a: String, _ sa: [Int], _ b: String, _ sb: [Int]
  ) -> Self {
    Self("shape-mismatch", "tensor '\(tensor)' has shape \(sa) in '\(a)' but \(sb) in '\(b)'")
  }
  fileprivate static func unresolvedParameter(_ name: String, tensor: String) -> Self {
    Self(
      "unresolved-parameter",
      "no value of '\(name)' applies to tensor '\(tensor)' (no filter matches it and there is no default)"
    )
  }
  fileprivate static func unresolvedInputParameter(_ name: String, tensor: String, model: String)
    -> Self
  {
    Self(
      "unresolved-input-parameter",
      "no value of '\(name)' applies to tensor '\(tensor)' of '\(model)' (no filter matches it)")
  }
}
