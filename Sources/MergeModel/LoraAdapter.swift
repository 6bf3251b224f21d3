/// How an adapter changes one tensor of its model: `W + scale · left · right`, where `left` is
/// `[rows, r]` and `right` is `[r, columns]` in the layout of `W`.
///
/// For an ordinary linear layer `left` is `lora_B` and `right` is `lora_A` (PEFT's `B·A`); for
/// an embedding, or a layer saved with `fan_in_fan_out`, PEFT transposes `B·A`, so `left` is
/// `lora_A`ᵀ and `right` is `lora_B`ᵀ — the same sums in the same order.
public struct LoraDelta: Sendable, Hashable {
  /// The adapter tensor holding `lora_A` (`[r, in]`).
  public var a: String
  /// The adapter tensor holding `lora_B` (`[out, r]`).
  public var b: String
  /// `lora_alpha / r` (or `/ √r` with rsLoRA), as PEFT computes it.
  public var scale: Float
  /// Whether `B·A` is transposed before it is added.
  public var transposed: Bool
  /// The rank.
  public var rank: Int
}

/// A PEFT LoRA adapter folder: `adapter_config.json` and `adapter_model.safetensors`.
///
/// Opening reads the config and the weights' header, never tensor data. Each `lora_A`/`lora_B`
/// pair becomes a ``LoraDelta`` of the model tensor it adapts; a whole tensor stored in the
/// adapter (PEFT's `modules_to_save`, or embeddings saved with it) replaces the model's. Kinds
/// of adapter the merge cannot apply exactly (DoRA, LoRA biases, convolutions, other PEFT
/// types) are refused with the reason.
public struct LoraAdapter: Sendable {
  /// The adapter folder.
  public let path: String
  /// `adapter_model.safetensors`.
  public let weights: ModelWeights
  /// The tensors it changes, by model tensor name.
  public let deltas: [String: LoraDelta]
  /// The model tensors it replaces, by model tensor name: the adapter tensor that replaces each.
  public let replacements: [String: String]
  /// The Hub snapshot it was read from, when its files are not downloaded yet.
  public private(set) var remote: RemoteSnapshot?

  /// The config file's name.
  public static let configFileName = "adapter_config.json"
  /// The weights file's name.
  public static let weightsFileName = "adapter_model.safetensors"

  /// Opens the adapter folder at `path`.
  public init(path: String) throws(ModelError) {
    switch FileSystem.kind(of: path) {
    case .missing: throw .notFound(path: path)
    case .file, .other: throw .badAdapter(path: path, reason: "it is a file, not an adapter folder")
    case .directory: break
    }
    let weightsPath = FileSystem.join(path, Self.weightsFileName)
    try self.init(
      path: path, names: try FileSystem.contents(of: path),
      read: { name throws(ModelError) in
        try FileSystem.read(FileSystem.join(path, name), limit: 16 << 20)
      },
      openWeights: { () throws(ModelError) in try SafetensorsFile(path: weightsPath) })
  }

  /// The adapter of a snapshot on the Hub, from its config and weights header (no download).
  public init(remote: RemoteSnapshot) throws(ModelError) {
    let weightsPath = FileSystem.join(remote.path, Self.weightsFileName)
    try self.init(
      path: remote.path, names: remote.files.keys.sorted(),
      read: { name throws(ModelError) in try remote.read(name) },
      openWeights: { () throws(ModelError) in
        guard let header = remote.headers[Self.weightsFileName] else {
          throw .notCached(
            repository: remote.repository.value,
            reason: "the header of '\(Self.weightsFileName)' was not read")
        }
        return SafetensorsFile(path: weightsPath, header: header)
      })
    self.remote = remote
  }

  private init(
    path: String, names: [String], read: (String) throws(ModelError) -> [UInt8],
    openWeights: () throws(ModelError) -> SafetensorsFile
  ) throws(ModelError) {
    guard names.contains(Self.configFileName) else {
      throw .badAdapter(path: path, reason: "it has no \(Self.configFileName)")
    }
    guard names.contains(Self.weightsFileName) else {
      let pickled = names.contains("adapter_model.bin")
      throw .badAdapter(
        path: path,
        reason: pickled
          ? "it holds adapter_model.bin (a PyTorch pickle); merge reads adapter_model.safetensors"
          : "it has no \(Self.weightsFileName)")
    }
    let configPath = FileSystem.join(path, Self.configFileName)
    let config = try Self.readConfig(try read(Self.configFileName), path: configPath)
    self.path = path
    let file = try openWeights()
    self.weights = try ModelWeights(files: [file])
    (deltas, replacements) = try Self.pair(weights.tensors, config: config, path: file.path)
  }

  /// The settings of `adapter_config.json` that decide the arithmetic.
  struct Config {
    var r: Int
    var alpha: Double
    var rsLoRA: Bool
    var fanInFanOut: Bool
    var rankPattern: [(String, Int)]
    var alphaPattern: [(String, Double)]

    /// `alpha / r` for module `module`, as PEFT computes it (patterns matched as PEFT does).
    func scale(of module: String) -> (scale: Float, rank: Int) {
      let rank = Self.match(module, rankPattern) ?? r
      let alpha = Self.match(module, alphaPattern) ?? self.alpha
      let s = rsLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank)
      return (Float(s), rank)
    }

    /// The value of the first pattern key that matches the end of `module` (`(.*\.)?KEY$`).
    static func match<T>(_ module: String, _ pattern: [(String, T)]) -> T? {
      for (key, value) in pattern {
        guard let regex = try? Regex("(.*\\.)?(\(key))") else { continue }
        if (try? regex.wholeMatch(in: module)) != nil { return value }
      }
      return nil
    }
  }

  static func readConfig(_ bytes: [UInt8], path configPath: String) throws(ModelError) -> Config {
    let json: JSONValue
    do {
      json = try JSONValue.parse(bytes)
    } catch {
      throw .badAdapter(path: configPath, reason: "it is not valid JSON (\(error))")
    }
    func fail(_ reason: String) -> ModelError { .badAdapter(path: configPath, reason: reason) }
    guard json.objectValue != nil else { throw fail("it is not a JSON object") }
    let kind = json["peft_type"]?.stringValue ?? "LORA"
    guard kind == "LORA" else {
      throw fail("its peft_type is \(kind); merge applies LoRA adapters only")
    }
    for (key, what) in [
      ("use_dora", "a DoRA adapter"), ("lora_bias", "an adapter with LoRA biases"),
      ("use_qalora", "a QA-LoRA adapter"),
    ] where json[key]?.boolValue == true {
      throw fail("\(key) is true: \(what) is not supported")
    }
    for key in ["layer_replication", "target_parameters"] {
      if let v = json[key], v != .null, v.arrayValue?.isEmpty != true {
        throw fail("\(key) is set; merge cannot apply such an adapter")
      }
    }
    guard let r = json["r"]?.intValue, r > 0 else { throw fail("'r' is not a positive integer") }
    guard
      let alphaText = json["lora_alpha"].flatMap({ v -> String? in
        if case .number(let s) = v { return s } else { return nil }
      }), let alpha = Double(alphaText)
    else { throw fail("'lora_alpha' is not a number") }
    func pattern<T>(_ key: String, _ read: (JSONValue) -> T?) throws(ModelError) -> [(String, T)] {
      guard let v = json[key], v != .null else { return [] }
      guard let members = v.objectValue else { throw fail("'\(key)' is not an object") }
      var out: [(String, T)] = []
      for (k, value) in members {
        guard let t = read(value) else {
          throw fail("'\(key)' has a value for '\(k)' that is not a number")
        }
        out.append((k, t))
      }
      return out
    }
    return Config(
      r: r, alpha: alpha, rsLoRA: json["use_rslora"]?.boolValue ?? false,
      fanInFanOut: json["fan_in_fan_out"]?.boolValue ?? false,
      rankPattern: try pattern("rank_pattern") { $0.intValue },
      alphaPattern: try pattern("alpha_pattern") { v in
        if case .number(let s) = v { return Double(s) } else { return nil }
      })
  }

  /// Pairs the `lora_A`/`lora_B` tensors by module; every other tensor replaces a model tensor.
  static func pair(_ tensors: [TensorInfo], config: Config, path: String) throws(ModelError) -> (
    [String: LoraDelta], [String: String]
  ) {
    var factors: [String: (a: TensorInfo?, b: TensorInfo?, embedding: Bool)] = [:]
    var replacements: [String: String] = [:]
    for t in tensors {
      var name = Substring(t.name)
      if name.hasPrefix("base_model.model.") { name = name.dropFirst("base_model.model.".count) }
      let kinds: [(String, Bool, Bool)] = [
        (".lora_A.weight", true, false), (".lora_B.weight", false, false),
        (".lora_embedding_A", true, true), (".lora_embedding_B", false, true),
      ]
      if let (suffix, isA, embedding) = kinds.first(where: { name.hasSuffix($0.0) }) {
        let module = String(name.dropLast(suffix.count))
        var entry = factors[module] ?? (nil, nil, embedding)
        if isA { entry.a = t } else { entry.b = t }
        factors[module] = entry
      } else if name.contains(".lora_") || name.hasSuffix("lora_magnitude_vector") {
        throw .badSafetensors(
          path: path, tensor: t.name,
          reason: "a LoRA tensor merge cannot apply (only lora_A/lora_B pairs are)")
      } else {
        var target = String(name)
        for wrapper in [".modules_to_save.default.", ".modules_to_save."] {
          target = target.replacing(wrapper, with: ".")
        }
        replacements[target] = t.name
      }
    }
    var deltas: [String: LoraDelta] = [:]
    for (module, entry) in factors {
      guard let a = entry.a, let b = entry.b else {
        throw .badSafetensors(
          path: path, tensor: (entry.a ?? entry.b)?.name,
          reason: "it has no matching \(entry.a == nil ? "lora_A" : "lora_B") tensor")
      }
      let (scale, rank) = config.scale(of: module)
      guard a.shape.count == 2, b.shape.count == 2, a.dtype.isFloatingPoint, b.dtype.isFloatingPoint
      else {
        throw .badSafetensors(
          path: path, tensor: a.name,
          reason:
            "LoRA factors of shape \(a.shape) and \(b.shape) are not two floating-point matrices")
      }
      guard a.shape[0] == rank, b.shape[1] == rank else {
        throw .badSafetensors(
          path: path, tensor: a.name,
          reason:
            "the factors have rank \(a.shape[0]) and \(b.shape[1]), but the config says r = \(rank)"
        )
      }
      deltas[module + ".weight"] = LoraDelta(
        a: a.name, b: b.name, scale: scale, transposed: entry.embedding || config.fanInFanOut,
        rank: rank)
    }
    return (deltas, replacements)
  }

  /// Why the adapter does not fit `model`: a tensor it changes that the model lacks or whose
  /// shape differs.
  public func problems(with model: ModelWeights) -> [ModelError] {
    var problems: [ModelError] = []
    let file = FileSystem.join(path, Self.weightsFileName)
    for (name, delta) in deltas.sorted(by: { $0.key < $1.key }) {
      guard let w = model.info(name) else {
        problems.append(
          .badSafetensors(
            path: file, tensor: delta.a, reason: "the model has no tensor '\(name)' to adapt"))
        continue
      }
      guard let a = weights.info(delta.a), let b = weights.info(delta.b) else { continue }
      let (rows, columns) = delta.transposed ? (a.shape[1], b.shape[0]) : (b.shape[0], a.shape[1])
      if w.shape != [rows, columns] {
        problems.append(
          .badSafetensors(
            path: file, tensor: delta.a,
            reason: "it adapts '\(name)' of shape \(w.shape) with factors making \([rows, columns])"
          ))
      } else if !w.dtype.isFloatingPoint {
        problems.append(
          .badSafetensors(path: file, tensor: delta.a, reason: "'\(name)' is not floating point"))
      }
    }
    for (name, stored) in replacements.sorted(by: { $0.key < $1.key }) {
      guard let w = model.info(name) else {
        problems.append(
          .badSafetensors(
            path: file, tensor: stored,
            reason: "it is neither a LoRA factor nor a tensor of the model ('\(name)')"))
        continue
      }
      if let t = weights.info(stored), t.shape != w.shape {
        problems.append(
          .badSafetensors(
            path: file, tensor: stored,
            reason: "it replaces '\(name)' of shape \(w.shape) with shape \(t.shape)"))
      }
    }
    return problems
  }
}
