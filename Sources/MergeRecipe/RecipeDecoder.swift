/// Turns YAML documents into a ``Recipe``, reporting every structural mistake it finds.
///
/// This is mergekit's configuration schema: the keys each mapping may hold, their types and
/// the shapes of model references and parameter settings. Method-specific rules (which
/// parameters a method takes, arity, ranges) are the checker's.
public struct RecipeDecoder {
  /// The keys a merge configuration may hold.
  public static let topLevelKeys = [
    "merge_method", "base_model", "models", "slices", "modules", "parameters", "dtype",
    "out_dtype", "tokenizer_source", "tokenizer", "chat_template", "name",
  ]
  /// The keys of an entry of `models:`.
  public static let modelKeys = ["model", "parameters"]
  /// The keys of an entry of `slices:`.
  public static let sliceKeys = ["sources", "base_model", "residual_weight", "parameters"]
  /// The keys of an entry of a slice's `sources:`.
  public static let sourceKeys = ["model", "layer_range", "parameters"]
  /// The keys of a module definition.
  public static let moduleKeys = ["slices", "models", "parameters"]
  /// The keys of a model reference written as a mapping.
  public static let modelReferenceKeys = ["model", "lora", "override_architecture"]
  /// The keys of a model path written as a mapping.
  public static let modelPathKeys = ["path", "revision"]
  /// The keys of `tokenizer:`.
  public static let tokenizerKeys = ["source", "tokens", "pad_to_multiple_of"]
  /// The keys of one entry of `tokenizer.tokens`.
  public static let tokenKeys = ["source", "force"]
  /// The keys of a `{filter, value}` entry.
  public static let conditionalKeys = ["filter", "value"]

  private var bag: DiagnosticBag

  /// Creates a decoder whose diagnostics name `file`.
  public init(file: String) {
    self.bag = DiagnosticBag(file: file)
  }

  /// Parses and decodes `text`, returning the recipe (nil if the YAML could not be read) and
  /// every diagnostic found.
  public static func decode(_ text: String, file: String) -> (
    recipe: Recipe?, diagnostics: [Diagnostic]
  ) {
    var decoder = RecipeDecoder(file: file)
    let parsed: YAMLParser.Result
    do {
      parsed = try YAMLParser.parse(text)
    } catch {
      decoder.bag.report(
        Diagnostic.Message(error.id, error.message), at: error.range, notes: error.notes)
      return (nil, decoder.bag.diagnostics)
    }
    for problem in parsed.problems {
      decoder.bag.report(
        Diagnostic.Message(problem.id, problem.message), at: problem.range, notes: problem.notes)
    }
    var stages: [MergeConfiguration] = []
    let documents = parsed.documents.filter { $0.root != nil }
    if documents.isEmpty {
      decoder.bag.report(.emptyRecipe, at: SourceRange(at: SourceLocation(line: 1, column: 1)))
    }
    for document in documents {
      guard let root = document.root else { continue }
      if let stage = decoder.configuration(root) { stages.append(stage) }
    }
    return (Recipe(file: file, stages: stages), decoder.bag.diagnostics)
  }

  // MARK: - Configuration

  private mutating func configuration(_ node: YAMLNode) -> MergeConfiguration? {
    guard let pairs = mapping(node, what: "a recipe") else { return nil }
    var config = MergeConfiguration(range: node.range)
    var keyRanges: [String: SourceRange] = [:]
    for pair in pairs {
      guard let key = keyName(pair.key) else { continue }
      keyRanges[key] = pair.key.range
      let value = pair.value
      switch key {
      case "merge_method": config.mergeMethod = string(value, key: key)
      case "name": config.name = string(value, key: key)
      case "base_model": config.baseModel = optionalModelReference(value)
      case "models":
        if let list = modelList(value) { config.models = Located(list, at: pair.key.range) }
      case "slices":
        if let list = sliceList(value) { config.slices = Located(list, at: pair.key.range) }
      case "modules":
        if let list = moduleList(value) { config.modules = Located(list, at: pair.key.range) }
      case "parameters": config.parameters = parameterTable(value)
      case "dtype": config.dtype = optionalString(value, key: key)
      case "out_dtype": config.outDtype = optionalString(value, key: key)
      case "tokenizer_source": config.tokenizerSource = tokenizerSource(value)
      case "tokenizer":
        if value.resolved != .null || value.scalar == nil { config.tokenizer = tokenizer(value) }
      case "chat_template": config.chatTemplate = optionalString(value, key: key)
      default:
        unknownKey(pair.key, key, in: Self.topLevelKeys, context: "the recipe")
      }
    }
    if config.mergeMethod == nil && keyRanges["merge_method"] == nil {
      bag.report(
        .missingKey("merge_method", in: "the recipe"), at: SourceRange(at: node.range.start))
    }
    let present = ["models", "slices", "modules"].filter { keyRanges[$0] != nil }
    if present.count > 1, let second = keyRanges[present[1]], let first = keyRanges[present[0]] {
      bag.report(
        .exclusiveKeys(present), at: second,
        notes: [Diagnostic.Note("'\(present[0])' is here", at: first)])
    } else if present.isEmpty {
      bag.report(.missingModels, at: SourceRange(at: node.range.start))
    }
    if config.tokenizer != nil, config.tokenizerSource != nil, let r = keyRanges["tokenizer"] {
      bag.report(.tokenizerAndSource, at: r)
    }
    return config
  }

  // MARK: - Models and slices

  private mutating func modelList(_ node: YAMLNode) -> [InputModel]? {
    guard let items = sequence(node, what: "'models'") else { return nil }
    if items.isEmpty { bag.report(.emptyList("models"), at: node.range) }
    return items.compactMap { item -> InputModel? in
      guard let pairs = mapping(item, what: "an entry of 'models'", hint: .modelEntryHint) else {
        return nil
      }
      var model: ModelReference?
      var parameters: ParameterTable?
      var sawModel = false
      for pair in pairs {
        guard let key = keyName(pair.key) else { continue }
        switch key {
        case "model":
          sawModel = true
          model = modelReference(pair.value)
        case "parameters": parameters = parameterTable(pair.value)
        default: unknownKey(pair.key, key, in: Self.modelKeys, context: "a model entry")
        }
      }
      if !sawModel { bag.report(.missingKey("model", in: "a model entry"), at: item.range) }
      guard let model else { return nil }
      return InputModel(model: model, parameters: parameters, range: item.range)
    }
  }

  private mutating func sliceList(_ node: YAMLNode) -> [OutputSlice]? {
    guard let items = sequence(node, what: "'slices'") else { return nil }
    if items.isEmpty { bag.report(.emptyList("slices"), at: node.range) }
    return items.compactMap { item -> OutputSlice? in
      guard let pairs = mapping(item, what: "an entry of 'slices'") else { return nil }
      var sources: [InputSlice]?
      var sourcesRange = item.range
      var baseModel: ModelReference?
      var residual: Located<Double>?
      var parameters: ParameterTable?
      for pair in pairs {
        guard let key = keyName(pair.key) else { continue }
        switch key {
        case "sources":
          sourcesRange = pair.key.range
          sources = sourceList(pair.value)
        case "base_model": baseModel = optionalModelReference(pair.value)
        case "residual_weight":
          if let n = number(pair.value, key: key) { residual = Located(n, at: pair.value.range) }
        case "parameters": parameters = parameterTable(pair.value)
        default: unknownKey(pair.key, key, in: Self.sliceKeys, context: "a slice")
        }
      }
      guard let sources else {
        if !pairs.contains(where: { $0.key.scalar?.value == "sources" }) {
          bag.report(.missingKey("sources", in: "a slice"), at: item.range)
        }
        return nil
      }
      var slice = OutputSlice(sources: sources, sourcesRange: sourcesRange, range: item.range)
      slice.baseModel = baseModel
      slice.residualWeight = residual
      slice.parameters = parameters
      return slice
    }
  }

  private mutating func sourceList(_ node: YAMLNode) -> [InputSlice]? {
    guard let items = sequence(node, what: "'sources'") else { return nil }
    if items.isEmpty { bag.report(.emptyList("sources"), at: node.range) }
    return items.compactMap { item -> InputSlice? in
      guard let pairs = mapping(item, what: "an entry of 'sources'") else { return nil }
      var model: ModelReference?
      var layerRange: LayerRange?
      var parameters: ParameterTable?
      var sawModel = false
      var sawRange = false
      for pair in pairs {
        guard let key = keyName(pair.key) else { continue }
        switch key {
        case "model":
          sawModel = true
          model = modelReference(pair.value)
        case "layer_range":
          sawRange = true
          layerRange = self.layerRange(pair.value)
        case "parameters": parameters = parameterTable(pair.value)
        default: unknownKey(pair.key, key, in: Self.sourceKeys, context: "a slice source")
        }
      }
      if !sawModel { bag.report(.missingKey("model", in: "a slice source"), at: item.range) }
      if !sawRange { bag.report(.missingKey("layer_range", in: "a slice source"), at: item.range) }
      guard let model else { return nil }
      return InputSlice(
        model: model, layerRange: layerRange, parameters: parameters, range: item.range)
    }
  }

  private mutating func layerRange(_ node: YAMLNode) -> LayerRange? {
    guard let items = node.sequence, items.count == 2 else {
      bag.report(.badLayerRange(found: node.kindDescription), at: node.range)
      return nil
    }
    var bounds: [Int] = []
    for item in items {
      guard case .int(let i) = item.resolved, item.scalar?.isQuoted == false else {
        bag.report(.expectedInteger(found: item), at: item.range)
        return nil
      }
      bounds.append(i)
    }
    return LayerRange(start: bounds[0], end: bounds[1], range: node.range)
  }

  private mutating func moduleList(_ node: YAMLNode) -> [OutputModule]? {
    guard let pairs = mapping(node, what: "'modules'") else { return nil }
    if pairs.isEmpty { bag.report(.emptyList("modules"), at: node.range) }
    return pairs.compactMap { pair -> OutputModule? in
      guard let name = keyName(pair.key) else { return nil }
      guard let body = mapping(pair.value, what: "a module definition") else { return nil }
      var module = OutputModule(name: Located(name, at: pair.key.range), range: pair.value.range)
      for entry in body {
        guard let key = keyName(entry.key) else { continue }
        switch key {
        case "slices":
          if let list = sliceList(entry.value) {
            module.slices = Located(list, at: entry.key.range)
          }
        case "models":
          if let list = modelList(entry.value) {
            module.models = Located(list, at: entry.key.range)
          }
        case "parameters": module.parameters = parameterTable(entry.value)
        default: unknownKey(entry.key, key, in: Self.moduleKeys, context: "a module")
        }
      }
      switch (module.slices, module.models) {
      case (nil, nil): bag.report(.missingModuleInputs(name), at: pair.key.range)
      case (let s?, .some): bag.report(.exclusiveKeys(["models", "slices"]), at: s.range)
      default: break
      }
      return module
    }
  }

  // MARK: - Model references

  private mutating func optionalModelReference(_ node: YAMLNode) -> ModelReference? {
    if node.scalar != nil, node.resolved == .null { return nil }
    return modelReference(node)
  }

  private mutating func modelReference(_ node: YAMLNode) -> ModelReference? {
    if let scalar = node.scalar {
      guard node.resolved != .null, !scalar.value.isEmpty else {
        bag.report(.expectedModel(found: node.kindDescription), at: node.range)
        return nil
      }
      let parts = scalar.value.split(separator: "+", omittingEmptySubsequences: false)
      guard parts.count <= 2, parts.allSatisfy({ !$0.isEmpty }) else {
        bag.report(.badModelString(scalar.value), at: node.range)
        return nil
      }
      let offset = scalar.style == .plain ? 0 : 1
      guard let model = modelPath(String(parts[0]), node: node, offset: offset) else { return nil }
      var lora: ModelPath?
      if parts.count == 2 {
        lora = modelPath(String(parts[1]), node: node, offset: offset + parts[0].count + 1)
        if lora == nil { return nil }
      }
      return ModelReference(model: model, lora: lora, range: node.range)
    }
    guard let pairs = mapping(node, what: "a model reference") else { return nil }
    var model: ModelPath?
    var lora: ModelPath?
    var arch: Located<String>?
    for pair in pairs {
      guard let key = keyName(pair.key) else { continue }
      switch key {
      case "model": model = modelPathNode(pair.value)
      case "lora":
        if pair.value.resolved != .null || pair.value.scalar == nil {
          lora = modelPathNode(pair.value)
        }
      case "override_architecture": arch = optionalString(pair.value, key: key)
      default: unknownKey(pair.key, key, in: Self.modelReferenceKeys, context: "a model reference")
      }
    }
    guard let model else {
      if !pairs.contains(where: { $0.key.scalar?.value == "model" }) {
        bag.report(.missingKey("model", in: "a model reference"), at: node.range)
      }
      return nil
    }
    return ModelReference(model: model, lora: lora, overrideArchitecture: arch, range: node.range)
  }

  private mutating func modelPathNode(_ node: YAMLNode) -> ModelPath? {
    if let scalar = node.scalar, node.resolved != .null, !scalar.value.isEmpty {
      return modelPath(scalar.value, node: node, offset: scalar.style == .plain ? 0 : 1)
    }
    guard let pairs = mapping(node, what: "a model path") else { return nil }
    var path: Located<String>?
    var revision: Located<String>?
    for pair in pairs {
      guard let key = keyName(pair.key) else { continue }
      switch key {
      case "path": path = string(pair.value, key: key)
      case "revision": revision = optionalString(pair.value, key: key)
      default: unknownKey(pair.key, key, in: Self.modelPathKeys, context: "a model path")
      }
    }
    guard let path else {
      if !pairs.contains(where: { $0.key.scalar?.value == "path" }) {
        bag.report(.missingKey("path", in: "a model path"), at: node.range)
      }
      return nil
    }
    return ModelPath(path: path, revision: revision)
  }

  /// Splits `path@revision`, locating each part inside the scalar when it sits on one line.
  private mutating func modelPath(_ text: String, node: YAMLNode, offset: Int) -> ModelPath? {
    let parts = text.split(separator: "@", omittingEmptySubsequences: false)
    guard parts.count <= 2, !parts[0].isEmpty else {
      bag.report(.badModelString(text), at: node.range)
      return nil
    }
    func sub(_ from: Int, _ length: Int) -> SourceRange {
      guard node.range.start.line == node.range.end.line else { return node.range }
      let start = SourceLocation(
        line: node.range.start.line, column: node.range.start.column + from)
      return SourceRange(
        start: start, end: SourceLocation(line: start.line, column: start.column + length))
    }
    let path = Located(String(parts[0]), at: sub(offset, parts[0].count))
    var revision: Located<String>?
    if parts.count == 2 {
      revision = Located(String(parts[1]), at: sub(offset + parts[0].count + 1, parts[1].count))
    }
    return ModelPath(path: path, revision: revision)
  }

  // MARK: - Tokenizer

  private mutating func tokenizerSource(_ node: YAMLNode) -> TokenizerSource? {
    if node.scalar != nil {
      switch node.resolved {
      case .null: return nil
      case .string("union"): return .union(node.range)
      case .string("base"): return .base(node.range)
      default: break
      }
    }
    return modelReference(node).map { .model($0) }
  }

  private mutating func tokenizer(_ node: YAMLNode) -> TokenizerConfiguration? {
    guard let pairs = mapping(node, what: "'tokenizer'") else { return nil }
    var config = TokenizerConfiguration(range: node.range)
    for pair in pairs {
      guard let key = keyName(pair.key) else { continue }
      switch key {
      case "source": config.source = tokenizerSource(pair.value)
      case "pad_to_multiple_of":
        if pair.value.resolved == .null { continue }
        if let i = integer(pair.value, key: key) {
          if i <= 0 { bag.report(.notPositive(key), at: pair.value.range) }
          config.padToMultipleOf = Located(i, at: pair.value.range)
        }
      case "tokens":
        if pair.value.resolved == .null, pair.value.scalar != nil { continue }
        guard let entries = mapping(pair.value, what: "'tokens'") else { continue }
        for entry in entries {
          guard let token = keyName(entry.key) else { continue }
          config.tokens.append(tokenEmbedding(Located(token, at: entry.key.range), entry.value))
        }
      default: unknownKey(pair.key, key, in: Self.tokenizerKeys, context: "'tokenizer'")
      }
    }
    return config
  }

  private mutating func tokenEmbedding(_ token: Located<String>, _ node: YAMLNode) -> TokenEmbedding
  {
    var result = TokenEmbedding(token: token, source: nil, force: nil)
    guard let pairs = mapping(node, what: "a token entry") else { return result }
    for pair in pairs {
      guard let key = keyName(pair.key) else { continue }
      switch key {
      case "force":
        if case .bool(let b) = pair.value.resolved {
          result.force = Located(b, at: pair.value.range)
        } else {
          bag.report(.expectedBoolean(key: key, found: pair.value), at: pair.value.range)
        }
      case "source": result.source = tokenSource(pair.value)
      default: unknownKey(pair.key, key, in: Self.tokenKeys, context: "a token entry")
      }
    }
    return result
  }

  private mutating func tokenSource(_ node: YAMLNode) -> TokenEmbedding.Source? {
    if node.scalar != nil {
      if node.resolved == .null { return nil }
      return modelReference(node).map { .model($0) }
    }
    guard let pairs = node.mapping else {
      bag.report(
        .expectedMapping(what: "a token source", found: node.kindDescription), at: node.range)
      return nil
    }
    guard let kindPair = pairs.first(where: { $0.key.scalar?.value == "kind" }) else {
      return modelReference(node).map { .model($0) }
    }
    switch kindPair.value.scalar?.value {
    case "zero":
      for pair in pairs where pair.key.scalar?.value != "kind" {
        unknownKey(
          pair.key, pair.key.scalar?.value ?? "", in: ["kind"], context: "a zero token source")
      }
      return .zero
    case "model_token":
      var model: ModelReference?
      var tokenID: Located<Int>?
      var token: Located<String>?
      for pair in pairs {
        guard let key = keyName(pair.key) else { continue }
        switch key {
        case "kind": break
        case "model": model = modelReference(pair.value)
        case "token_id":
          integer(pair.value, key: key).map { tokenID = Located($0, at: pair.value.range) }
        case "token": token = string(pair.value, key: key)
        default:
          unknownKey(
            pair.key, key, in: ["kind", "model", "token_id", "token"], context: "a token source")
        }
      }
      if (tokenID == nil) == (token == nil) {
        bag.report(.tokenIDOrToken, at: node.range)
      }
      guard let model else {
        bag.report(.missingKey("model", in: "a token source"), at: node.range)
        return nil
      }
      return .modelToken(model, tokenID: tokenID, token: token)
    default:
      bag.report(.badTokenSourceKind(kindPair.value.scalar?.value ?? ""), at: kindPair.value.range)
      return nil
    }
  }

  // MARK: - Parameters

  private mutating func parameterTable(_ node: YAMLNode) -> ParameterTable? {
    if node.scalar != nil, node.resolved == .null { return nil }
    guard let pairs = mapping(node, what: "'parameters'") else { return nil }
    var entries: [ParameterTable.Entry] = []
    for pair in pairs {
      guard let name = keyName(pair.key) else { continue }
      guard let setting = parameterSetting(pair.value, name: name) else { continue }
      entries.append(
        ParameterTable.Entry(name: Located(name, at: pair.key.range), setting: setting))
    }
    return ParameterTable(entries: entries, range: node.range)
  }

  private mutating func parameterSetting(_ node: YAMLNode, name: String) -> ParameterSetting? {
    switch node.kind {
    case .scalar(let s):
      return .scalar(ParameterScalar(value: node.resolved, quoted: s.isQuoted, range: node.range))
    case .mapping:
      guard let entry = conditional(node, name: name) else { return nil }
      return .conditional([entry], node.range)
    case .sequence(let items):
      if items.allSatisfy({ $0.scalar != nil }) {
        return .gradient(items.map(Self.scalar), node.range)
      }
      if items.allSatisfy({ $0.mapping != nil }) {
        let entries = items.compactMap { conditional($0, name: name) }
        guard entries.count == items.count else { return nil }
        return .conditional(entries, node.range)
      }
      bag.report(.mixedParameterList(name), at: node.range)
      return nil
    }
  }

  private static func scalar(_ node: YAMLNode) -> ParameterScalar {
    ParameterScalar(value: node.resolved, quoted: node.scalar?.isQuoted ?? false, range: node.range)
  }

  private mutating func conditional(_ node: YAMLNode, name: String) -> ConditionalSetting? {
    guard let pairs = node.mapping else { return nil }
    var filter: Located<String>?
    var value: ParameterSetting?
    var sawValue = false
    for pair in pairs {
      guard let key = keyName(pair.key) else { continue }
      switch key {
      case "filter": filter = optionalString(pair.value, key: key)
      case "value":
        sawValue = true
        switch pair.value.kind {
        case .scalar(let s):
          value = .scalar(
            ParameterScalar(value: pair.value.resolved, quoted: s.isQuoted, range: pair.value.range)
          )
        case .sequence(let items) where items.allSatisfy({ $0.scalar != nil }):
          value = .gradient(items.map(Self.scalar), pair.value.range)
        default:
          bag.report(
            .badConditionalValue(name, found: pair.value.kindDescription), at: pair.value.range)
        }
      default:
        unknownKey(pair.key, key, in: Self.conditionalKeys, context: "a '\(name)' entry")
      }
    }
    if !sawValue {
      bag.report(.missingKey("value", in: "a '\(name)' entry"), at: node.range)
    }
    guard let value else { return nil }
    return ConditionalSetting(filter: filter, value: value, range: node.range)
  }

  // MARK: - Primitive readers

  private mutating func keyName(_ node: YAMLNode) -> String? {
    guard let s = node.scalar else {
      bag.report(.nonScalarKey, at: node.range)
      return nil
    }
    return s.value
  }

  private mutating func mapping(
    _ node: YAMLNode, what: String, hint: Diagnostic.Note? = nil
  ) -> [YAMLPair]? {
    if let pairs = node.mapping { return pairs }
    bag.report(
      .expectedMapping(what: what, found: node.kindDescription), at: node.range,
      notes: hint.map { [$0] } ?? [])
    return nil
  }

  private mutating func sequence(_ node: YAMLNode, what: String) -> [YAMLNode]? {
    if let items = node.sequence { return items }
    bag.report(.expectedList(what: what, found: node.kindDescription), at: node.range)
    return nil
  }

  private mutating func string(_ node: YAMLNode, key: String) -> Located<String>? {
    guard let s = node.scalar, node.resolved != .null else {
      bag.report(.expectedString(key: key, found: node.kindDescription), at: node.range)
      return nil
    }
    return Located(s.value, at: node.range)
  }

  private mutating func optionalString(_ node: YAMLNode, key: String) -> Located<String>? {
    if node.scalar != nil, node.resolved == .null { return nil }
    return string(node, key: key)
  }

  private mutating func number(_ node: YAMLNode, key: String) -> Double? {
    if let n = node.resolved.number, node.scalar != nil { return n }
    bag.report(.expectedNumber(key: key, found: node), at: node.range)
    return nil
  }

  private mutating func integer(_ node: YAMLNode, key: String) -> Int? {
    if case .int(let i) = node.resolved, node.scalar?.isQuoted == false { return i }
    bag.report(.expectedInteger(found: node), at: node.range)
    return nil
  }

  private mutating func unknownKey(
    _ node: YAMLNode, _ key: String, in known: [String], context: String
  ) {
    bag.report(
      .unknownKey(key, in: context, suggestion: Suggestion.closest(to: key, in: known)),
      at: node.range)
  }
}

extension Diagnostic.Note {
  fileprivate static let modelEntryHint = Diagnostic.Note(
    "write each model as '- model: PATH', optionally with 'parameters:'")
}

extension Diagnostic.Message {
  fileprivate static let emptyRecipe = Diagnostic.Message("empty-recipe", "the recipe is empty")
  fileprivate static let missingModels = Diagnostic.Message(
    "missing-models", "the recipe needs one of 'models', 'slices' or 'modules'")
  fileprivate static let tokenizerAndSource = Diagnostic.Message(
    "tokenizer-and-source", "'tokenizer' and 'tokenizer_source' cannot both be given")
  fileprivate static let nonScalarKey = Diagnostic.Message(
    "non-scalar-key", "keys must be plain strings")
  fileprivate static let tokenIDOrToken = Diagnostic.Message(
    "token-id-or-token", "a 'model_token' source needs exactly one of 'token_id' and 'token'")

  fileprivate static func missingKey(_ key: String, in context: String) -> Self {
    Self("missing-key", "\(context) needs '\(key)'")
  }
  fileprivate static func exclusiveKeys(_ keys: [String]) -> Self {
    Self(
      "exclusive-keys",
      "'\(keys[0])' and '\(keys[1])' cannot be used together; a recipe uses exactly one of 'models', 'slices' and 'modules'"
    )
  }
  fileprivate static func emptyList(_ key: String) -> Self {
    Self("empty-list", "'\(key)' is empty")
  }
  fileprivate static func missingModuleInputs(_ name: String) -> Self {
    Self("missing-module-inputs", "module '\(name)' needs 'models' or 'slices'")
  }
  fileprivate static func badLayerRange(found: String) -> Self {
    Self(
      "bad-layer-range",
      "'layer_range' must be a list of two layer indices [start, end], found \(found)")
  }
  fileprivate static func expectedInteger(found: YAMLNode) -> Self {
    Self("expected-integer", "expected an integer, found \(describe(found))")
  }
  fileprivate static func expectedModel(found: String) -> Self {
    Self("expected-model", "expected a model path, found \(found)")
  }
  fileprivate static func badModelString(_ text: String) -> Self {
    Self(
      "bad-model-string",
      "'\(text)' is not a model reference; write 'path', 'path@revision' or 'path+lora'")
  }
  fileprivate static func notPositive(_ key: String) -> Self {
    Self("not-positive", "'\(key)' must be positive")
  }
  fileprivate static func expectedBoolean(key: String, found: YAMLNode) -> Self {
    Self("expected-boolean", "'\(key)' must be true or false, found \(describe(found))")
  }
  fileprivate static func badTokenSourceKind(_ kind: String) -> Self {
    Self(
      "bad-token-source-kind",
      "unknown token source kind '\(kind)'; expected 'zero' or 'model_token'")
  }
  fileprivate static func mixedParameterList(_ name: String) -> Self {
    Self(
      "mixed-parameter-list",
      "'\(name)' mixes numbers and {filter, value} entries; use a list of one or the other")
  }
  fileprivate static func badConditionalValue(_ name: String, found: String) -> Self {
    Self(
      "bad-conditional-value",
      "the value of a '\(name)' entry must be a number or a list of numbers, found \(found)")
  }
  fileprivate static func expectedMapping(what: String, found: String) -> Self {
    Self("expected-mapping", "expected \(what) to be a mapping, found \(found)")
  }
  fileprivate static func expectedList(what: String, found: String) -> Self {
    Self("expected-list", "expected \(what) to be a list, found \(found)")
  }
  fileprivate static func expectedString(key: String, found: String) -> Self {
    Self("expected-string", "'\(key)' must be a string, found \(found)")
  }
  fileprivate static func expectedNumber(key: String, found: YAMLNode) -> Self {
    Self("expected-number", "'\(key)' must be a number, found \(describe(found))")
  }
  fileprivate static func unknownKey(_ key: String, in context: String, suggestion: String?) -> Self
  {
    if let suggestion {
      return Self(
        "unknown-key", "unknown key '\(key)' in \(context); did you mean '\(suggestion)'?")
    }
    return Self("unknown-key", "unknown key '\(key)' in \(context)")
  }

  /// Describes a node for messages: `a string 'abc'`, `a list`.
  static func describe(_ node: YAMLNode) -> String {
    guard let s = node.scalar else { return node.kindDescription }
    switch node.resolved {
    case .null: return "null"
    default: return "\(node.kindDescription) '\(s.value)'"
    }
  }
}
