/// A repository snapshot on the Hugging Face Hub, read without downloading its weights: the
/// file list with sizes, the small files (configs, index), and each safetensors file's header.
///
/// `merge check` and `merge plan` of a repository that is not in the hub cache work from this;
/// `merge run` downloads the files first. ``path`` is where the snapshot will be in the cache.
public struct RemoteSnapshot: Sendable, Hashable {
  /// The repository.
  public var repository: HubRepositoryID
  /// The commit the revision resolved to.
  public var commit: String
  /// The snapshot's folder in the hub cache (it may not exist yet).
  public var path: String
  /// Every file of the repository at that commit, with its size in bytes.
  public var files: [String: Int]
  /// The small files read whole (config.json, the weight index, adapter_config.json).
  public var smallFiles: [String: [UInt8]]
  /// The header of each safetensors file read (two range requests each).
  public var headers: [String: SafetensorsHeader]

  /// Creates a snapshot description.
  public init(
    repository: HubRepositoryID, commit: String, path: String, files: [String: Int],
    smallFiles: [String: [UInt8]], headers: [String: SafetensorsHeader]
  ) {
    self.repository = repository
    self.commit = commit
    self.path = path
    self.files = files
    self.smallFiles = smallFiles
    self.headers = headers
  }

  /// The small file `name`, or why it cannot be read.
  public func read(_ name: String) throws(ModelError) -> [UInt8] {
    guard let bytes = smallFiles[name] else {
      throw .notCached(
        repository: repository.value, reason: "'\(name)' was not read from the Hub")
    }
    return bytes
  }

  /// The bytes of the files a merge of this model would download.
  public func downloadBytes(of names: [String]) -> Int {
    names.reduce(0) { $0 + (files[$1] ?? 0) }
  }
}

/// Reads snapshots of repositories that are not in the hub cache, from the Hub.
public protocol RemoteSnapshotReader: Sendable {
  /// The snapshot of `repository` at `revision` (`main` when nil), with `smallFiles` read
  /// whole (those it has) and the headers of its safetensors weights.
  func snapshot(
    of repository: HubRepositoryID, revision: String?, smallFiles: [String]
  ) throws(ModelError) -> RemoteSnapshot
}
