#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// A Hugging Face–style model folder: config.json, safetensors weights and side files.
///
/// Opening a folder reads `config.json` and, for a sharded model, the index; no weights.
/// ``openWeights()`` then reads the safetensors headers, still no tensor data.
public struct ModelFolder: Sendable, Hashable {
  /// The folder's path, as given.
  public var path: String
  /// Its parsed config.json.
  public var config: ModelConfig
  /// The safetensors files that hold the weights, relative to the folder, in order.
  public var weightFiles: [String]
  /// For a sharded model, the shard of each tensor named by the index.
  public var weightMap: [String: String]?
  /// The Hub snapshot the folder was read from, when its files are not downloaded yet.
  public var remote: RemoteSnapshot?
  /// The stage of a multi-stage recipe that produces the model, when no folder holds it.
  public var produced: ProducedModel?

  /// Names of files copied from a donor model into the output: tokenizer and generation files.
  public static let sideFileNames: Set<String> = [
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
    "added_tokens.json", "vocab.json", "merges.txt", "vocab.txt", "spiece.model",
    "generation_config.json", "chat_template.jinja", "chat_template.json",
    "preprocessor_config.json",
  ]

  /// The single-file weights' name.
  public static let singleFileName = "model.safetensors"
  /// The PyTorch checkpoint's name, read when a folder has no safetensors weights.
  public static let pickleFileName = "pytorch_model.bin"
  /// The index of a sharded PyTorch checkpoint.
  public static let pickleIndexFileName = "pytorch_model.bin.index.json"
  /// The index file's name.
  public static let indexFileName = "model.safetensors.index.json"

  /// Opens the model folder at `path`.
  ///
  /// As mergekit does, the weights are `model.safetensors.index.json` and the shards it names,
  /// or `model.safetensors`.
  ///
  /// - Throws: `ModelError.notFound` when nothing is there; `ModelError.notAModel` when the
  ///   folder lacks config.json or safetensors weights; `ModelError.badConfig` when config.json
  ///   is not a JSON object; `ModelError.badIndex` for an index that is not a weight map or
  ///   names a missing shard.
  public init(path: String) throws(ModelError) {
    switch FileSystem.kind(of: path) {
    case .missing: throw .notFound(path: path)
    case .file, .other: throw .notAModel(path: path, reason: "it is a file, not a model folder")
    case .directory: break
    }
    try self.init(path: path, names: try FileSystem.contents(of: path)) { name throws(ModelError) in
      try FileSystem.read(FileSystem.join(path, name))
    }
  }

  /// The folder of a snapshot on the Hub, from its file list and small files (no download).
  public init(remote: RemoteSnapshot) throws(ModelError) {
    try self.init(path: remote.path, names: remote.files.keys.sorted()) {
      name throws(ModelError) in try remote.read(name)
    }
    self.remote = remote
  }

  /// The model stage `produced.stage` produces, known by ``ProducedModel/path(ofStage:)``.
  public init(produced: ProducedModel) throws(ModelError) {
    self.path = ProducedModel.path(ofStage: produced.stage)
    self.config = try ModelConfig(
      bytes: Array(produced.config.formatted().utf8), path: FileSystem.join(path, "config.json"))
    self.weightFiles = [Self.singleFileName]
    self.weightMap = nil
    self.produced = produced
  }

  /// A folder holding files `names`, whose config and index `read` gives.
  private init(
    path: String, names: [String], read: (String) throws(ModelError) -> [UInt8]
  ) throws(ModelError) {
    guard names.contains("config.json") else {
      throw .notAModel(path: path, reason: "it has no config.json")
    }
    let configPath = FileSystem.join(path, "config.json")
    self.config = try ModelConfig(bytes: try read("config.json"), path: configPath)
    self.path = path
    // Safetensors first, then a PyTorch checkpoint, as transformers looks for them.
    let hasSafetensors =
      names.contains(Self.indexFileName) || names.contains(Self.singleFileName)
      || names.contains(where: { $0.hasSuffix(".safetensors") })
    let index =
      names.contains(Self.indexFileName) || hasSafetensors
      ? Self.indexFileName : Self.pickleIndexFileName
    if names.contains(index) {
      let indexPath = FileSystem.join(path, index)
      let map = try Self.readIndex(bytes: try read(index), path: indexPath)
      for shard in Set(map.values).sorted() where !names.contains(shard) {
        throw .badIndex(
          path: indexPath, reason: "it names shard '\(shard)', which is not in the folder")
      }
      self.weightMap = map
      self.weightFiles = Set(map.values).sorted()
    } else if names.contains(Self.singleFileName) {
      self.weightMap = nil
      self.weightFiles = [Self.singleFileName]
    } else if !hasSafetensors && names.contains(Self.pickleFileName) {
      self.weightMap = nil
      self.weightFiles = [Self.pickleFileName]
    } else {
      let others = names.filter { $0.hasSuffix(".safetensors") }
      if !others.isEmpty {
        throw .notAModel(
          path: path,
          reason:
            "it has no model.safetensors or model.safetensors.index.json (found \(others.joined(separator: ", ")))"
        )
      }
      if names.contains(where: {
        $0.hasSuffix(".bin") || $0.hasSuffix(".pt") || $0.hasSuffix(".pth")
      }) {
        throw .notAModel(
          path: path,
          reason:
            "it holds PyTorch weights under other names; merge reads model.safetensors (or its index) and pytorch_model.bin (or its index)"
        )
      }
      throw .notAModel(path: path, reason: "it has no weights (.safetensors or pytorch_model.bin)")
    }
  }

  /// Reads a `model.safetensors.index.json`: its `weight_map`, tensor name → shard file.
  public static func readIndex(_ indexPath: String) throws(ModelError) -> [String: String] {
    try readIndex(bytes: try FileSystem.read(indexPath), path: indexPath)
  }

  /// Reads the bytes of a `model.safetensors.index.json` at `indexPath`.
  public static func readIndex(bytes: [UInt8], path indexPath: String = indexFileName)
    throws(ModelError) -> [String: String]
  {
    let json: JSONValue
    do {
      json = try JSONValue.parse(bytes, rejectingDuplicateKeys: true)
    } catch {
      throw .badIndex(path: indexPath, reason: "not valid JSON (\(error.description))")
    }
    guard json.objectValue != nil else {
      throw .badIndex(path: indexPath, reason: "not a JSON object")
    }
    guard let members = json["weight_map"]?.objectValue else {
      throw .badIndex(
        path: indexPath, reason: "it has no 'weight_map' object: this is not a weight index")
    }
    var map: [String: String] = [:]
    for (name, value) in members {
      guard let shard = value.stringValue else {
        throw .badIndex(path: indexPath, reason: "the shard of tensor '\(name)' is not a file name")
      }
      guard !shard.contains("/"), shard != "..", shard != "." else {
        throw .badIndex(
          path: indexPath,
          reason: "the shard '\(shard)' of tensor '\(name)' is not a file in the folder")
      }
      map[name] = shard
    }
    if map.isEmpty { throw .badIndex(path: indexPath, reason: "its weight_map is empty") }
    return map
  }

  /// The files that hold the model itself: config.json, the index (when there is one) and the
  /// weight files, sorted (what a lock file and a task vector's manifest name it by).
  public var definingFiles: [String] {
    var names = ["config.json"] + weightFiles
    for index in [Self.indexFileName, Self.pickleIndexFileName]
    where FileSystem.kind(of: FileSystem.join(path, index)) == .file {
      names.append(index)
    }
    return Set(names).sorted()
  }

  /// The side files present in the folder (tokenizer, generation config, chat template).
  public func sideFiles() -> [String] {
    if let produced {
      return produced.files.keys.sorted().filter { Self.sideFileNames.contains($0) }
    }
    let names = remote.map { $0.files.keys.sorted() } ?? (try? FileSystem.contents(of: path)) ?? []
    return names.filter { Self.sideFileNames.contains($0) }
  }

  /// What side file `name` holds: a stage's own content, or the file in the folder.
  public func content(of name: String) -> FileContent {
    produced?.files[name] ?? .copy(from: FileSystem.join(path, name))
  }

  /// The largest side file copied into an output.
  public static let sideFileLimit = 1 << 30

  /// Why each side file that cannot be copied cannot (a dangling link, a folder or a FIFO in
  /// its place, a file over ``sideFileLimit``), checked by opening it, without reading it.
  public func sideFileProblems() -> [ModelError] {
    var problems: [ModelError] = []
    // A stage's files are its donor's, checked when that stage was.
    if produced != nil { return [] }
    for name in sideFiles() {
      let file = FileSystem.join(path, name)
      // Not downloaded yet: the size the Hub lists (the files are checked again once fetched).
      if let size = remote?.files[name] {
        if size > Self.sideFileLimit {
          problems.append(.tooLarge(path: file, limit: Self.sideFileLimit))
        }
        continue
      }
      do {
        let (fd, size) = try FileSystem.openRegularFile(file)
        close(fd)
        if size > Self.sideFileLimit {
          problems.append(.tooLarge(path: file, limit: Self.sideFileLimit))
        }
      } catch {
        problems.append(error)
      }
    }
    return problems
  }

  /// The model's layer count: config.json's, which must agree with the layers its tensors
  /// name; the tensors' when config.json gives none.
  ///
  /// - Throws: `ModelError.badConfig` for a layer count outside 0...``TensorNaming/layerLimit``
  ///   or one the tensors contradict (layers would be dropped, or invented);
  ///   `ModelError.badSafetensors` for a tensor named for a layer past the limit.
  public func layerCount(weights: ModelWeights) throws(ModelError) -> Int {
    let limit = TensorNaming.layerLimit
    for t in weights.tensors {
      guard let part = TensorNaming.layerComponent(of: t.name),
        TensorNaming.layerIndex(of: t.name) == nil
      else { continue }
      throw .badSafetensors(
        path: weights.file(for: t.name)?.path ?? path, tensor: t.name,
        reason: "it names layer \(part); merge handles at most \(limit) layers")
    }
    let named = TensorNaming.layerCount(of: weights.tensors.map(\.name))
    let configPath = FileSystem.join(path, "config.json")
    guard let (_, key) = config.layerCountPath else { return named }
    guard let count = config.layerCount else {
      throw .badConfig(path: configPath, reason: "\(key) is not an integer")
    }
    guard (0...limit).contains(count) else {
      throw .badConfig(
        path: configPath, reason: "\(key) is \(count); a layer count is from 0 to \(limit)")
    }
    if named > 0 && count != named {
      throw .badConfig(
        path: configPath,
        reason:
          "\(key) is \(count), but the tensors hold layers 0 to \(named - 1); merging would \(count < named ? "drop layers" : "invent layers")"
      )
    }
    return count
  }

  /// Opens every weights file and validates its header (no tensor data is read).
  public func openWeights() throws(ModelError) -> ModelWeights {
    if let produced {
      return try ModelWeights(files: [SafetensorsFile(path: path, header: produced.header)])
    }
    var files: [SafetensorsFile] = []
    for name in weightFiles {
      let file = FileSystem.join(path, name)
      if let remote {
        guard let header = remote.headers[name] else {
          throw .notCached(
            repository: remote.repository.value, reason: "the header of '\(name)' was not read")
        }
        files.append(SafetensorsFile(path: file, header: header))
      } else {
        files.append(try SafetensorsFile.open(file))
      }
    }
    return try ModelWeights(
      files: files, weightMap: weightMap, indexPath: FileSystem.join(path, Self.indexFileName))
  }
}

/// The tensors of a model, across its shards.
public struct ModelWeights: Sendable {
  /// The weights files.
  public let files: [SafetensorsFile]
  /// Every tensor in order: by file, then by position in the file's data section.
  public let tensors: [TensorInfo]
  /// Each tensor's file; nil for a model of one file without an index, whose header's own
  /// positions answer (a million-tensor header is then hashed once, not twice).
  private let location: [String: Int]?

  /// Indexes `files`; with a weight map, every tensor it names must be in its shard, and
  /// only the tensors it names are part of the model.
  public init(files: [SafetensorsFile], weightMap: [String: String]? = nil, indexPath: String = "")
    throws(ModelError)
  {
    if files.count == 1, weightMap == nil {
      self.files = files
      self.tensors = Self.inDataOrder(files[0].header.tensors)
      self.location = nil
      return
    }
    var location: [String: Int] = [:]
    var tensors: [TensorInfo] = []
    let total = files.reduce(0) { $0 + $1.header.tensors.count }
    location.reserveCapacity(total)
    tensors.reserveCapacity(total)
    for (i, file) in files.enumerated() {
      let shardName = file.path.split(separator: "/").last.map(String.init) ?? file.path
      for t in Self.inDataOrder(file.header.tensors) {
        if let map = weightMap {
          guard let listed = map[t.name] else {
            // Reading only what the index lists would silently drop this tensor.
            throw .badIndex(
              path: indexPath,
              reason: "it does not list tensor '\(t.name)', which \(shardName) holds")
          }
          if listed != shardName { continue }
        }
        if let j = location[t.name] {
          throw .badSafetensors(
            path: file.path, tensor: t.name, reason: "the tensor is also in \(files[j].path)")
        }
        location[t.name] = i
        tensors.append(t)
      }
    }
    if let map = weightMap {
      for (name, shard) in map.sorted(by: { $0.key < $1.key }) where location[name] == nil {
        throw .badIndex(
          path: indexPath,
          reason: "it places tensor '\(name)' in '\(shard)', which does not hold it")
      }
    }
    self.files = files
    self.tensors = tensors
    self.location = location
  }

  /// `tensors` ordered by their place in the data section (as they nearly always are).
  private static func inDataOrder(_ tensors: [TensorInfo]) -> [TensorInfo] {
    let ordered = zip(tensors, tensors.dropFirst()).allSatisfy {
      $0.dataRange.lowerBound <= $1.dataRange.lowerBound
    }
    return ordered ? tensors : tensors.sorted { $0.dataRange.lowerBound < $1.dataRange.lowerBound }
  }

  /// The file that holds tensor `name`.
  public func file(for name: String) -> SafetensorsFile? {
    guard let location else { return files[0].header.positions[name] == nil ? nil : files[0] }
    return location[name].map { files[$0] }
  }

  /// The entry of tensor `name`.
  public func info(_ name: String) -> TensorInfo? {
    file(for: name)?.info(name)
  }

  /// A view of tensor `name`'s bytes.
  public func tensor(_ name: String) throws(ModelError) -> TensorView {
    guard let file = file(for: name) else {
      throw .missingTensor(path: files.first?.path ?? "", tensor: name)
    }
    return try file.tensor(name)
  }

  /// The total bytes of the tensors' data.
  public var byteCount: Int { tensors.reduce(0) { $0 + $1.byteCount } }
  /// The total number of elements.
  public var parameterCount: Int { tensors.reduce(0) { $0 + $1.count } }
}
