import MergeModel

/// Reads repositories that are not in the hub cache from the Hub without their weights: the
/// file list, the small files asked for, and each safetensors file's header through two byte
/// ranges (its 8-byte length, then the header) — a 70B model is checked and priced from a few
/// hundred kilobytes.
public struct HubRemoteReader: RemoteSnapshotReader {
  /// The client.
  public let client: HubClient
  /// The cache whose layout names where each snapshot will be.
  public let cache: HubCache

  /// A reader through `client`, for snapshots that will live in `cache`.
  public init(client: HubClient, cache: HubCache) {
    self.client = client
    self.cache = cache
  }

  public func snapshot(
    of repository: HubRepositoryID, revision: String?, smallFiles: [String]
  ) throws(ModelError) -> RemoteSnapshot {
    let info = try client.info(repository, revision: revision ?? "main")
    var small: [String: [UInt8]] = [:]
    for name in smallFiles where info.files[name] != nil {
      small[name] = try client.bytes(repository, commit: info.commit, file: name)
    }
    var headers: [String: SafetensorsHeader] = [:]
    for name in Self.weightFiles(info.files.keys, small: small) {
      guard let size = info.files[name]?.size else { continue }
      if name.hasSuffix(".bin") {
        // A PyTorch checkpoint: its zip directory and pickle, by byte ranges.
        headers[name] = try TorchCheckpoint.header(
          size: size, path: client.fileURL(repository, commit: info.commit, file: name),
          exactOffsets: false
        ) { offset, count throws(ModelError) in
          try client.bytes(
            repository, commit: info.commit, file: name, range: offset..<(offset + count))
        }
      } else {
        headers[name] = try header(repository, commit: info.commit, file: name, size: size)
      }
    }
    let folder = FileSystem.join(
      FileSystem.join(FileSystem.join(cache.path, repository.cacheFolderName), "snapshots"),
      info.commit)
    return RemoteSnapshot(
      repository: repository, commit: info.commit, path: folder,
      files: info.files.mapValues(\.size), smallFiles: small, headers: headers)
  }

  /// The weights files whose headers a check reads, as a folder is read: the shards the
  /// safetensors index names, else the top-level `.safetensors` files, else the PyTorch
  /// checkpoint's shards (by its index) or `pytorch_model.bin`.
  static func weightFiles(_ names: some Collection<String>, small: [String: [UInt8]]) -> [String] {
    for index in [ModelFolder.indexFileName, ModelFolder.pickleIndexFileName] {
      if let bytes = small[index], let map = try? ModelFolder.readIndex(bytes: bytes) {
        return Set(map.values).filter { names.contains($0) }.sorted()
      }
      if index == ModelFolder.indexFileName {
        let safetensors = names.filter { $0.hasSuffix(".safetensors") && !$0.contains("/") }
        if !safetensors.isEmpty { return safetensors.sorted() }
      }
    }
    return names.contains(ModelFolder.pickleFileName) ? [ModelFolder.pickleFileName] : []
  }

  /// The header of a safetensors file of `size` bytes, from two byte-range requests.
  func header(_ repository: HubRepositoryID, commit: String, file: String, size: Int)
    throws(ModelError) -> SafetensorsHeader
  {
    let path = client.fileURL(repository, commit: commit, file: file)
    guard size >= 8 else {
      return try SafetensorsHeader(bytes: [], fileSize: size, path: path)
    }
    let prefix = try client.bytes(repository, commit: commit, file: file, range: 0..<8)
    guard prefix.count == 8 else {
      throw .hub(
        repository: repository.value, reason: "\(path): the Hub sent \(prefix.count) of 8 bytes")
    }
    let length = prefix.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    // An impossible length is refused by the header's own checks, before anything is fetched.
    guard length <= UInt64(SafetensorsHeader.maximumHeaderLength), Int(length) <= size - 8 else {
      return try SafetensorsHeader(bytes: prefix, fileSize: size, path: path)
    }
    let header = try client.bytes(
      repository, commit: commit, file: file, range: 8..<(8 + Int(length)))
    return try SafetensorsHeader(bytes: prefix + header, fileSize: size, path: path)
  }
}
