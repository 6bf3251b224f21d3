/// A task-vector folder: τ = θ_fine-tuned − θ_base, per tensor, and what it was taken from.
///
/// `merge diff` writes one, `merge apply` adds it to a base. The folder holds:
///
/// - `task_vector.json`, the manifest: `format` (`merge-task-vector`), `version` (1), `dtype`
///   (the stored dtype of τ), `density` (1 for dense), `base` and `finetuned` (each the model as
///   given, and its `config.json` and weight files with size and SHA-256), and `tensors`, one
///   entry per tensor in the base's order: `name`, `shape`, `stored` (`dense` or `sparse`),
///   `kept` (entries stored), `changed` (entries where τ ≠ 0), `norm` (‖τ‖₂) and `base_norm`
///   (‖θ_base‖₂), norms accumulated in f64.
/// - `task_vector.safetensors`: a dense tensor's τ under its own name; a sparse one as
///   `NAME.__values` (the kept entries, in index order) and `NAME.__indices` (their positions in
///   the flattened tensor, int64, ascending).
///
/// Tensors of the base that τ does not name are unchanged by it.
public struct TaskVectorManifest: Sendable, Equatable {
  /// A file of a model and its content.
  public struct File: Sendable, Equatable {
    public var name: String
    public var size: Int
    public var sha256: String
    public init(name: String, size: Int, sha256: String) {
      self.name = name
      self.size = size
      self.sha256 = sha256
    }
  }

  /// A model as given and its files.
  public struct Model: Sendable, Equatable {
    public var path: String
    public var files: [File]
    public init(path: String, files: [File]) {
      self.path = path
      self.files = files
    }
  }

  /// One tensor's entry.
  public struct Tensor: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    public var sparse: Bool
    public var kept: Int
    public var changed: Int
    public var norm: Double
    public var baseNorm: Double
    public init(
      name: String, shape: [Int], sparse: Bool, kept: Int, changed: Int, norm: Double,
      baseNorm: Double
    ) {
      self.name = name
      self.shape = shape
      self.sparse = sparse
      self.kept = kept
      self.changed = changed
      self.norm = norm
      self.baseNorm = baseNorm
    }
  }

  public static let manifestName = "task_vector.json"
  public static let weightsName = "task_vector.safetensors"
  public static let format = "merge-task-vector"
  public static let version = 1

  /// The stored dtype of τ.
  public var dtype: DType
  /// The share of entries kept (1 for dense).
  public var density: Double
  public var base: Model
  public var finetuned: Model
  public var tensors: [Tensor]

  public init(
    dtype: DType, density: Double, base: Model, finetuned: Model, tensors: [Tensor]
  ) {
    self.dtype = dtype
    self.density = density
    self.base = base
    self.finetuned = finetuned
    self.tensors = tensors
  }

  /// The names a sparse tensor's values and indices are stored under.
  public static func sparseNames(_ name: String) -> (values: String, indices: String) {
    (name + ".__values", name + ".__indices")
  }

  /// The entries a sparse τ of `count` entries keeps at `density`: ⌊density·count⌋, at least
  /// one of a non-empty tensor when the density is above 0.
  public static func kept(count: Int, density: Double) -> Int {
    guard count > 0, density > 0 else { return 0 }
    if density >= 1 { return count }
    return max(1, Int((density * Double(count)).rounded(.down)))
  }

  /// The manifest's JSON text.
  public var text: String {
    func model(_ m: Model) -> JSONValue {
      .object([
        ("path", .string(m.path)),
        (
          "files",
          .array(
            m.files.map {
              .object([
                ("file", .string($0.name)), ("size", .integer($0.size)),
                ("sha256", .string($0.sha256)),
              ])
            })
        ),
      ])
    }
    let json = JSONValue.object([
      ("format", .string(Self.format)), ("version", .integer(Self.version)),
      ("dtype", .string(dtype.torchName)), ("density", .number(String(density))),
      ("base", model(base)), ("finetuned", model(finetuned)),
      (
        "tensors",
        .array(
          tensors.map { t in
            .object([
              ("name", .string(t.name)), ("shape", .array(t.shape.map { .integer($0) })),
              ("stored", .string(t.sparse ? "sparse" : "dense")), ("kept", .integer(t.kept)),
              ("changed", .integer(t.changed)), ("norm", .number(String(t.norm))),
              ("base_norm", .number(String(t.baseNorm))),
            ])
          })
      ),
    ])
    return json.formatted() + "\n"
  }

  /// Reads the manifest of the task-vector folder `folder`.
  public init(folder: String) throws(ModelError) {
    let path = FileSystem.join(folder, Self.manifestName)
    func bad(_ reason: String) -> ModelError { .badTaskVector(path: path, reason: reason) }
    guard FileSystem.kind(of: path) == .file else {
      throw bad(
        "there is no \(Self.manifestName): not a task-vector folder ('merge diff' writes one)")
    }
    let json: JSONValue
    do {
      json = try JSONValue.parse(try FileSystem.read(path, limit: 64 << 20))
    } catch let error as ModelError {
      throw error
    } catch {
      throw bad("it is not JSON (\(error))")
    }
    guard json["format"]?.stringValue == Self.format, json["version"]?.intValue == Self.version
    else { throw bad("it is not a task vector of format \(Self.format) \(Self.version)") }
    guard let dtypeName = json["dtype"]?.stringValue, let dtype = DType(recipeName: dtypeName),
      case .number(let densityText)? = json["density"], let density = Double(densityText)
    else { throw bad("it lacks dtype or density") }
    func model(_ key: String) throws(ModelError) -> Model {
      guard let m = json[key], let p = m["path"]?.stringValue else {
        throw bad("it lacks '\(key)'")
      }
      var files: [File] = []
      for f in m["files"]?.arrayValue ?? [] {
        guard let n = f["file"]?.stringValue, let s = f["size"]?.intValue,
          let h = f["sha256"]?.stringValue
        else { throw bad("a file of '\(key)' lacks file, size or sha256") }
        files.append(File(name: n, size: s, sha256: h))
      }
      return Model(path: p, files: files)
    }
    var tensors: [Tensor] = []
    for t in json["tensors"]?.arrayValue ?? [] {
      guard let name = t["name"]?.stringValue, let shape = t["shape"]?.arrayValue,
        let stored = t["stored"]?.stringValue, let kept = t["kept"]?.intValue,
        let changed = t["changed"]?.intValue,
        case .number(let normText)? = t["norm"], let norm = Double(normText),
        case .number(let baseText)? = t["base_norm"], let baseNorm = Double(baseText)
      else { throw bad("a tensor entry is incomplete") }
      let dims = shape.compactMap(\.intValue)
      guard dims.count == shape.count, dims.allSatisfy({ $0 >= 0 }) else {
        throw bad("tensor '\(name)' has a bad shape")
      }
      tensors.append(
        Tensor(
          name: name, shape: dims, sparse: stored == "sparse", kept: kept, changed: changed,
          norm: norm, baseNorm: baseNorm))
    }
    self.init(
      dtype: dtype, density: density, base: try model("base"), finetuned: try model("finetuned"),
      tensors: tensors)
  }

  /// The files of the model folder `folder` that identify it (config.json, index, weights),
  /// each with its size and SHA-256 (a Hub cache's LFS blob by its name, without reading it).
  public static func files(of folder: ModelFolder) throws(ModelError) -> [File] {
    var out: [File] = []
    for name in folder.definingFiles {
      let hashed = try SHA256.content(of: FileSystem.join(folder.path, name))
      out.append(File(name: name, size: hashed.size, sha256: hashed.sha256))
    }
    return out
  }
}

/// A task-vector folder as a recipe source's adapter (`BASE+TVFOLDER`): its manifest and its
/// weights (headers read, data mapped on use).
public struct TaskVectorSource: Sendable {
  /// The folder.
  public var path: String
  public var manifest: TaskVectorManifest
  public var weights: ModelWeights
  /// Each tensor's entry, by name.
  public var entries: [String: TaskVectorManifest.Tensor]

  /// The bytes stored for `tensor`'s τ (a sparse one's values and positions), and the bytes a
  /// merge holds in memory while it adds it (a sparse τ's values as f32 and positions as 64-bit
  /// integers; a dense one is read as it goes).
  public func bytes(of tensor: String) -> (stored: Int, held: Int) {
    guard let entry = entries[tensor] else { return (0, 0) }
    if !entry.sparse { return (weights.info(tensor)?.byteCount ?? 0, 0) }
    let names = TaskVectorManifest.sparseNames(tensor)
    let stored = [names.values, names.indices].reduce(0) { $0 + (weights.info($1)?.byteCount ?? 0) }
    return (stored, entry.kept * (4 + 8))
  }

  /// Whether `path` is a task-vector folder (it holds `task_vector.json`).
  public static func isTaskVector(_ path: String) -> Bool {
    FileSystem.kind(of: FileSystem.join(path, TaskVectorManifest.manifestName)) == .file
  }

  /// Opens the task-vector folder at `path`.
  public init(path: String) throws(ModelError) {
    self.path = path
    manifest = try TaskVectorManifest(folder: path)
    weights = try ModelWeights(
      files: [try SafetensorsFile.open(FileSystem.join(path, TaskVectorManifest.weightsName))])
    entries = Dictionary(manifest.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    for t in manifest.tensors {
      let names = TaskVectorManifest.sparseNames(t.name)
      let stored = t.sparse ? [names.values, names.indices] : [t.name]
      for name in stored where weights.info(name) == nil {
        throw .badTaskVector(
          path: path, reason: "its weights lack '\(name)', which the manifest lists")
      }
    }
  }

  /// Why the task vector cannot be added to a model of `weights`: a tensor the model lacks or
  /// has in another shape.
  public func problems(with weights: ModelWeights) -> [ModelError] {
    var found: [ModelError] = []
    for t in manifest.tensors {
      guard let info = weights.info(t.name) else {
        found.append(.badTaskVector(path: path, reason: "tensor '\(t.name)' is not in the model"))
        continue
      }
      if info.shape != t.shape {
        found.append(
          .badTaskVector(
            path: path, reason: "tensor '\(t.name)' has shape \(t.shape), the model's \(info.shape)"
          ))
      }
    }
    return found
  }

  /// Why `folder` is not the base the task vector was taken from, judged by its files' sizes
  /// (a recipe's check reads no weights; `merge apply` compares SHA-256), if it is not.
  public func sizeMismatch(with folder: ModelFolder) -> ModelError? {
    for file in manifest.base.files where file.name != "config.json" {
      let size = try? FileSystem.size(of: FileSystem.join(folder.path, file.name))
      if size != file.size {
        return .badTaskVector(
          path: path,
          reason:
            "it was taken from another base ('\(manifest.base.path)'): its \(file.name) has \(file.size) bytes, this model's \(size.map(String.init) ?? "none")"
        )
      }
    }
    return nil
  }

  /// Tensor `name`'s entries stored sparse: the values (as f64) and their positions in the
  /// flattened tensor of `count` elements, checked to be ascending and inside it.
  public func sparseEntries(_ name: String, count: Int) throws(ModelError) -> (
    values: [Double], positions: [Int]
  ) {
    let names = TaskVectorManifest.sparseNames(name)
    let valuesView = try weights.tensor(names.values)
    let positionsView = try weights.tensor(names.indices)
    var values: [Double] = []
    valuesView.decodeDoubles(0..<valuesView.count, into: &values)
    guard let raw = positionsView.bytes.baseAddress, positionsView.info.dtype == .int64 else {
      throw .badTaskVector(path: path, reason: "'\(names.indices)' is not int64")
    }
    var positions: [Int] = []
    positions.reserveCapacity(positionsView.count)
    for j in 0..<positionsView.count {
      let i = Int(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: j * 8, as: Int64.self)))
      guard i >= 0, i < count, positions.last.map({ $0 < i }) ?? true else {
        throw .badTaskVector(
          path: path, reason: "'\(names.indices)' holds positions out of order or outside '\(name)'"
        )
      }
      positions.append(i)
    }
    // Read once, into memory: the file's pages leave the process.
    valuesView.release()
    positionsView.release()
    guard values.count == positions.count else {
      throw .badTaskVector(
        path: path, reason: "'\(name)' has \(values.count) values but \(positions.count) positions")
    }
    return (values, positions)
  }
}
