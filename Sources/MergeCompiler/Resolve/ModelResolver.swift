import MergeModel
import MergeRecipe

/// Where a model a recipe names lives.
public enum ModelLocation: Sendable, Hashable {
  /// A folder on disk (it may not exist).
  case local(String)
  /// A Hugging Face repository: its snapshot in the hub cache, or why it is not there.
  case hub(HubRepositoryID, revision: String?, snapshot: Result<String, HubCache.Miss>)
  /// The output of an earlier stage of a multi-stage recipe, by the stage's name.
  case stage(String)

  /// The path on disk: a local folder or a hub snapshot.
  ///
  /// A repository that is not cached gets a name that is no path
  /// (`hub:owner/name@revision`), so that it is still one key.
  public var path: String {
    switch self {
    case .local(let path): return path
    case .stage(let name): return ProducedModel.path(ofStage: name)
    case .hub(_, _, .success(let snapshot)): return snapshot
    case .hub(let repository, let revision, .failure):
      return "hub:\(repository)@\(revision ?? "main")"
    }
  }
}

/// Finds the model folders a recipe names and opens each at most once.
///
/// A name is a local folder when it exists, relative to the recipe file's folder (absolute and
/// `~/` paths as they are); otherwise, when it is a Hugging Face repository id (`owner/name`,
/// with an optional `@revision`) and no local folder `owner` exists, it is that repository's
/// snapshot in the hub cache, as mergekit treats a path that does not exist as a repository.
public struct ModelResolver: Sendable {
  /// The folder relative paths are resolved against.
  public let baseDirectory: String
  /// The Hugging Face hub cache that repository ids are looked up in.
  public let hubCache: HubCache
  /// Where repositories that are not in the cache are read from (their configs and headers),
  /// if the network may be used.
  public let remote: (any RemoteSnapshotReader)?
  /// Whether repositories read from the Hub also need their tokenizer files (a recipe with a
  /// tokenizer section or a chat template builds the output's tokenizer from them).
  public var remoteTokenizers = false
  /// The outputs of the stages resolved so far, by stage name: a model path that names one is
  /// that stage's output, before any folder (as mergekit-multi rewrites such paths).
  public var stages: [String: ModelFolder] = [:]
  private var cache: [String: Result<ModelFolder, ModelError>] = [:]

  /// Creates a resolver for a recipe in `baseDirectory`, with the hub cache the environment
  /// names unless `hubCache` is given.
  public init(
    baseDirectory: String, hubCache: HubCache = .fromEnvironment(),
    remote: (any RemoteSnapshotReader)? = nil
  ) {
    self.baseDirectory = baseDirectory
    self.hubCache = hubCache
    self.remote = remote
  }

  /// Where `model` lives.
  public func location(of model: ModelPath) -> ModelLocation {
    let written = model.path.value
    if stages[written] != nil { return .stage(written) }
    var local = path(of: written)
    // mergekit resolves a relative path against the working directory: a folder found only
    // there is used (the checker says so).
    if FileSystem.kind(of: local) == .missing, let fromHere = workingDirectoryPath(of: written),
      FileSystem.kind(of: fromHere) != .missing
    {
      local = fromHere
    }
    let explicit = written.hasPrefix("/") || written.hasPrefix("~") || written.hasPrefix(".")
    // `models/ft7` beside a folder `models` is a mistyped folder, not a repository.
    let owner = written.split(separator: "/").dropLast().first.map { path(of: String($0)) }
    guard !explicit, FileSystem.kind(of: local) == .missing,
      owner.map({ FileSystem.kind(of: $0) == .missing }) ?? true,
      let repository = HubRepositoryID(written)
    else { return .local(local) }
    let revision = model.revision?.value
    return .hub(
      repository, revision: revision,
      snapshot: hubCache.snapshot(of: repository, revision: revision))
  }

  /// The path `reference` names on disk (``ModelLocation/path``).
  public func path(of reference: ModelReference) -> String {
    location(of: reference.model).path
  }

  /// `path` as mergekit reads it, from the working directory, when that differs from
  /// ``path(of:)-(String)`` (a relative path of a recipe outside the working directory).
  public func workingDirectoryPath(of path: String) -> String? {
    guard !path.hasPrefix("/"), !path.hasPrefix("~/"), baseDirectory != "." else { return nil }
    guard let here = FileSystem.realPath("."),
      let recipeFolder = FileSystem.realPath(baseDirectory),
      here != recipeFolder
    else { return nil }
    return path
  }

  /// Whether `model` is a folder found from the working directory only.
  public func isFromWorkingDirectory(_ model: ModelPath) -> Bool {
    guard case .local(let path) = location(of: model) else { return false }
    return path != self.path(of: model.path.value)
  }

  /// `path` resolved against the recipe's folder (absolute paths unchanged).
  public func path(of path: String) -> String {
    if path.hasPrefix("/") { return path }
    if path.hasPrefix("~/") { return FileSystem.expandingHome(path) }
    if baseDirectory == "." { return path }
    return FileSystem.join(baseDirectory, path)
  }

  /// Opens the folder `reference` names, or reports why it cannot be used.
  public mutating func folder(for reference: ModelReference) -> Result<ModelFolder, ModelError> {
    let location = location(of: reference.model)
    let key = location.path
    if let cached = cache[key] { return cached }
    let result: Result<ModelFolder, ModelError>
    switch location {
    case .stage(let name):
      guard let folder = stages[name] else { return .failure(.notFound(path: key)) }
      return .success(folder)
    case .hub(let repository, let revision, .failure(let miss)):
      result = Result { () throws(ModelError) in
        try ModelFolder(
          remote: try remoteSnapshot(
            repository, revision: revision, miss: miss, key: key,
            smallFiles: modelFiles))
      }
    case .local(let path):
      result = Result { () throws(ModelError) in try ModelFolder(path: path) }
    case .hub(let repository, let revision, .success(let path)):
      // A snapshot that lacks files (another tool fetched only some) is completed from the Hub.
      result = Result { () throws(ModelError) in
        do throws(ModelError) {
          return try ModelFolder(path: path)
        } catch {
          guard remote != nil else { throw error }
          return try ModelFolder(
            remote: try remoteSnapshot(
              repository, revision: revision, miss: .repository(folder: path), key: key,
              smallFiles: modelFiles))
        }
      }
    }
    cache[key] = result
    return result
  }

  /// The small files a model read from the Hub is opened from.
  private var modelFiles: [String] {
    ["config.json", ModelFolder.indexFileName, ModelFolder.pickleIndexFileName]
      + (remoteTokenizers ? TokenizerFiles.fileNames : [])
  }

  /// Opens the LoRA adapter `reference` names, if it names one.
  public func adapter(for reference: ModelReference) -> Result<LoraAdapter, ModelError>? {
    guard let lora = reference.lora else { return nil }
    let location = location(of: lora)
    switch location {
    case .hub(let repository, let revision, .failure(let miss)):
      return Result { () throws(ModelError) in
        try LoraAdapter(
          remote: try remoteSnapshot(
            repository, revision: revision, miss: miss, key: location.path,
            smallFiles: [LoraAdapter.configFileName]))
      }
    case .local(let path), .hub(_, _, .success(let path)), .stage(let path):
      return Result { () throws(ModelError) in try LoraAdapter(path: path) }
    }
  }

  /// The repository read from the Hub (configs and headers only), known by `key`; without a
  /// remote reader (offline), why it is not in the cache.
  private func remoteSnapshot(
    _ repository: HubRepositoryID, revision: String?, miss: HubCache.Miss, key: String,
    smallFiles: [String]
  ) throws(ModelError) -> RemoteSnapshot {
    guard let remote else {
      throw .notCached(repository: repository.value, reason: miss.description)
    }
    var snapshot = try remote.snapshot(of: repository, revision: revision, smallFiles: smallFiles)
    snapshot.path = key
    return snapshot
  }
}
