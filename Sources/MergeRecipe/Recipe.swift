/// A recipe file: one merge configuration per YAML document.
///
/// A file with several documents is a multi-stage recipe: each stage but the last has a `name`,
/// and later stages may use an earlier stage's name as a model path.
public struct Recipe: Sendable, Hashable {
  /// The path of the recipe file, as given.
  public var file: String
  /// The stages, in file order.
  public var stages: [MergeConfiguration]

  /// Creates a recipe.
  public init(file: String, stages: [MergeConfiguration]) {
    self.file = file
    self.stages = stages
  }
}

/// One merge: mergekit's `MergeConfiguration`, with every value located.
public struct MergeConfiguration: Sendable, Hashable {
  /// The stage's name in a multi-stage recipe.
  public var name: Located<String>?
  /// The merge method, as written.
  public var mergeMethod: Located<String>?
  /// The model task vectors are taken against.
  public var baseModel: ModelReference?
  /// The models to merge, when the recipe merges whole models.
  public var models: Located<[InputModel]>?
  /// The output's layer slices, when the recipe builds the output slice by slice.
  public var slices: Located<[OutputSlice]>?
  /// Per-module definitions, for multi-module architectures.
  public var modules: Located<[OutputModule]>?
  /// Parameters that apply to every tensor unless a more specific setting overrides them.
  public var parameters: ParameterTable?
  /// The dtype inputs are converted to before computing.
  public var dtype: Located<String>?
  /// The dtype the output is stored in.
  public var outDtype: Located<String>?
  /// Where the output's tokenizer comes from (`union`, `base` or a model).
  public var tokenizerSource: TokenizerSource?
  /// The full tokenizer configuration (`tokenizer:`), an alternative to `tokenizer_source`.
  public var tokenizer: TokenizerConfiguration?
  /// A chat template name or a Jinja template.
  public var chatTemplate: Located<String>?
  /// The whole document.
  public var range: SourceRange

  /// Creates an empty configuration spanning `range`.
  public init(range: SourceRange) {
    self.range = range
  }

  /// Every model the stage refers to, in the order they are written, base model first.
  public var referencedModels: [ModelReference] {
    var result: [ModelReference] = []
    func add(_ m: ModelReference) {
      if !result.contains(where: { $0.identity == m.identity }) { result.append(m) }
    }
    if let baseModel { add(baseModel) }
    for m in models?.value ?? [] { add(m.model) }
    for s in slices?.value ?? [] {
      if let b = s.baseModel { add(b) }
      for src in s.sources { add(src.model) }
    }
    for module in modules?.value ?? [] {
      for m in module.models?.value ?? [] { add(m.model) }
      for s in module.slices?.value ?? [] {
        if let b = s.baseModel { add(b) }
        for src in s.sources { add(src.model) }
      }
    }
    return result
  }
}

/// A path with an optional revision: `path` or `path@revision`.
public struct ModelPath: Sendable, Hashable {
  /// The folder or Hugging Face repository.
  public var path: Located<String>
  /// The revision after `@`, if any.
  public var revision: Located<String>?

  /// Creates a model path.
  public init(path: Located<String>, revision: Located<String>? = nil) {
    self.path = path
    self.revision = revision
  }

  /// The path as mergekit prints it.
  public var description: String {
    if let revision { return "\(path.value)@\(revision.value)" }
    return path.value
  }
}

/// A reference to a model: `path`, `path@revision`, `path+lora`, or the mapping form.
public struct ModelReference: Sendable, Hashable {
  /// The model itself.
  public var model: ModelPath
  /// A LoRA adapter to apply to the model first.
  public var lora: ModelPath?
  /// An architecture name that replaces the one in the model's config.json.
  public var overrideArchitecture: Located<String>?
  /// Where the reference was written.
  public var range: SourceRange

  /// Creates a reference.
  public init(
    model: ModelPath, lora: ModelPath? = nil, overrideArchitecture: Located<String>? = nil,
    range: SourceRange
  ) {
    self.model = model
    self.lora = lora
    self.overrideArchitecture = overrideArchitecture
    self.range = range
  }

  /// The reference as text, as mergekit prints it (`path@rev+lora`).
  public var description: String {
    if let lora { return "\(model.description)+\(lora.description)" }
    return model.description
  }

  /// What makes two references the same model (mergekit compares references by value).
  public var identity: String {
    description + "|" + (overrideArchitecture?.value ?? "")
  }
}

/// An entry of `models:`.
public struct InputModel: Sendable, Hashable {
  /// The model.
  public var model: ModelReference
  /// Parameters for this model's tensors.
  public var parameters: ParameterTable?
  /// The whole entry.
  public var range: SourceRange

  /// Creates an entry.
  public init(model: ModelReference, parameters: ParameterTable?, range: SourceRange) {
    self.model = model
    self.parameters = parameters
    self.range = range
  }
}

/// A half-open range of layers `[start, end)`.
public struct LayerRange: Sendable, Hashable {
  /// The first layer.
  public var start: Int
  /// One past the last layer.
  public var end: Int
  /// Where it was written.
  public var range: SourceRange

  /// Creates a layer range.
  public init(start: Int, end: Int, range: SourceRange) {
    self.start = start
    self.end = end
    self.range = range
  }

  /// The number of layers.
  public var count: Int { end - start }
}

/// One source of an output slice: a model and the layers taken from it.
public struct InputSlice: Sendable, Hashable {
  /// The model.
  public var model: ModelReference
  /// The layers taken.
  public var layerRange: LayerRange?
  /// Parameters for this source's tensors.
  public var parameters: ParameterTable?
  /// The whole entry.
  public var range: SourceRange

  /// Creates a source.
  public init(
    model: ModelReference, layerRange: LayerRange?, parameters: ParameterTable?, range: SourceRange
  ) {
    self.model = model
    self.layerRange = layerRange
    self.parameters = parameters
    self.range = range
  }
}

/// One slice of the output: layers merged from its sources.
public struct OutputSlice: Sendable, Hashable {
  /// The inputs merged into these layers.
  public var sources: [InputSlice]
  /// Where `sources:` was written.
  public var sourcesRange: SourceRange
  /// A base model for this slice only.
  public var baseModel: ModelReference?
  /// mergekit accepts this key but never uses it.
  public var residualWeight: Located<Double>?
  /// Parameters for this slice's tensors.
  public var parameters: ParameterTable?
  /// The whole slice.
  public var range: SourceRange

  /// Creates a slice.
  public init(sources: [InputSlice], sourcesRange: SourceRange, range: SourceRange) {
    self.sources = sources
    self.sourcesRange = sourcesRange
    self.range = range
  }
}

/// One module of a multi-module architecture (`modules: {name: {...}}`).
public struct OutputModule: Sendable, Hashable {
  /// The module's name.
  public var name: Located<String>
  /// Its slices.
  public var slices: Located<[OutputSlice]>?
  /// Its models.
  public var models: Located<[InputModel]>?
  /// Parameters for this module's tensors.
  public var parameters: ParameterTable?
  /// The whole definition.
  public var range: SourceRange

  /// Creates a module definition.
  public init(name: Located<String>, range: SourceRange) {
    self.name = name
    self.range = range
  }
}

/// Where the output tokenizer comes from.
public enum TokenizerSource: Sendable, Hashable {
  /// The union of every model's vocabulary.
  case union(SourceRange)
  /// The base model's tokenizer.
  case base(SourceRange)
  /// A given model's tokenizer.
  case model(ModelReference)

  /// Where it was written.
  public var range: SourceRange {
    switch self {
    case .union(let r), .base(let r): return r
    case .model(let m): return m.range
    }
  }
}

/// `tokenizer:` — the tokenizer source plus per-token embedding choices.
public struct TokenizerConfiguration: Sendable, Hashable {
  /// Where the tokenizer comes from; mergekit's default is `union`.
  public var source: TokenizerSource?
  /// Per-token embedding sources, by token text.
  public var tokens: [TokenEmbedding]
  /// Pad the vocabulary to a multiple of this.
  public var padToMultipleOf: Located<Int>?
  /// The whole mapping.
  public var range: SourceRange

  /// Creates a tokenizer configuration.
  public init(range: SourceRange) {
    self.tokens = []
    self.range = range
  }
}

/// Where one token's embedding comes from.
public struct TokenEmbedding: Sendable, Hashable {
  /// What kind of source.
  public enum Source: Sendable, Hashable {
    /// A zero vector.
    case zero
    /// The embedding of a token (by id or text) in a model.
    case modelToken(ModelReference, tokenID: Located<Int>?, token: Located<String>?)
    /// The same token in a model.
    case model(ModelReference)
  }

  /// The token's text.
  public var token: Located<String>
  /// Where its embedding comes from.
  public var source: Source?
  /// Whether to overwrite an embedding that exists.
  public var force: Located<Bool>?

  /// Creates a token entry.
  public init(token: Located<String>, source: Source?, force: Located<Bool>?) {
    self.token = token
    self.source = source
    self.force = force
  }
}

/// A `parameters:` mapping: names and their settings, in file order.
public struct ParameterTable: Sendable, Hashable {
  /// One name and its setting.
  public struct Entry: Sendable, Hashable {
    /// The parameter's name.
    public var name: Located<String>
    /// Its setting.
    public var setting: ParameterSetting

    /// Creates an entry.
    public init(name: Located<String>, setting: ParameterSetting) {
      self.name = name
      self.setting = setting
    }
  }

  /// The entries in file order.
  public var entries: [Entry]
  /// The whole mapping.
  public var range: SourceRange

  /// Creates a table.
  public init(entries: [Entry], range: SourceRange) {
    self.entries = entries
    self.range = range
  }

  /// The setting for `name`, if the table has one.
  public subscript(name: String) -> ParameterSetting? {
    entries.first { $0.name.value == name }?.setting
  }
}

/// A scalar parameter value as written.
public struct ParameterScalar: Sendable, Hashable {
  /// The resolved YAML value.
  public var value: YAMLValue
  /// Whether the text was quoted (then it was a string to mergekit's YAML reader).
  public var quoted: Bool
  /// Where it was written.
  public var range: SourceRange

  /// Creates a scalar.
  public init(value: YAMLValue, quoted: Bool = false, range: SourceRange) {
    self.value = value
    self.quoted = quoted
    self.range = range
  }
}

/// One `{filter, value}` entry of a conditional setting.
public struct ConditionalSetting: Sendable, Hashable {
  /// The substring a tensor name must contain; nil or `*` matches every tensor.
  public var filter: Located<String>?
  /// The value: a scalar or a gradient.
  public var value: ParameterSetting
  /// The whole entry.
  public var range: SourceRange

  /// Creates an entry.
  public init(filter: Located<String>?, value: ParameterSetting, range: SourceRange) {
    self.filter = filter
    self.value = value
    self.range = range
  }
}

/// A parameter's setting: a value, a gradient over layers, or values chosen by tensor name.
public indirect enum ParameterSetting: Sendable, Hashable {
  /// One value for every tensor.
  case scalar(ParameterScalar)
  /// Values interpolated piecewise-linearly over the layers of a slice.
  case gradient([ParameterScalar], SourceRange)
  /// The first entry whose filter matches the tensor name wins.
  case conditional([ConditionalSetting], SourceRange)

  /// Where the setting was written.
  public var range: SourceRange {
    switch self {
    case .scalar(let s): return s.range
    case .gradient(_, let r), .conditional(_, let r): return r
    }
  }

  /// Every scalar in the setting, in file order.
  public var scalars: [ParameterScalar] {
    switch self {
    case .scalar(let s): return [s]
    case .gradient(let values, _): return values
    case .conditional(let entries, _): return entries.flatMap(\.value.scalars)
    }
  }
}
