import Dispatch
import Foundation
import MergeModel
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Downloads the files a merge needs from a repository into the hub cache, laid out as
/// `huggingface_hub` lays it out (`blobs/ID`, `snapshots/COMMIT/FILE` linking to the blob,
/// `refs/REVISION`), so that Python tools and merge share what either fetched.
///
/// Only config, weights (with their index), tokenizer, template and adapter files are
/// fetched; a blob already there is not fetched again. A file is written to
/// `blobs/ID.incomplete` first and resumed from there after an interruption (an HTTP range
/// request from its size); an LFS file's SHA-256 is checked against the id the Hub gives before
/// it is renamed into place — a mismatch is discarded and fetched once more, then refused.
/// Several files download at once.
public struct HubDownloader: Sendable {
  /// The client.
  public let client: HubClient
  /// The cache written into.
  public let cache: HubCache

  /// A downloader through `client` into `cache`.
  public init(client: HubClient, cache: HubCache) {
    self.client = client
    self.cache = cache
  }

  /// The files of a repository a merge reads, of those it has: config, weights and index,
  /// tokenizer and template files, adapter files.
  public static func neededFiles(_ has: (String) -> Bool, index: [String: String]?) -> [String] {
    var names: Set<String> = [
      "config.json", LoraAdapter.configFileName, LoraAdapter.weightsFileName,
    ]
    names.formUnion(ModelFolder.sideFileNames)
    if let index {
      names.formUnion([ModelFolder.indexFileName, ModelFolder.pickleIndexFileName])
      names.formUnion(index.values)
    } else if has(ModelFolder.singleFileName) {
      names.insert(ModelFolder.singleFileName)
    } else {
      // No safetensors: the PyTorch checkpoint, read without running it.
      names.insert(ModelFolder.pickleFileName)
    }
    return names.filter(has).sorted()
  }

  /// Bytes received so far of a download, reported at most four times a second.
  public final class Progress: Sendable {
    private let state = Mutex<(done: Int, total: Int, reported: UInt64)>((0, 0, 0))
    private let report: @Sendable (_ done: Int, _ total: Int) -> Void

    /// Progress told to `report` (bytes received, bytes to receive).
    public init(report: @escaping @Sendable (_ done: Int, _ total: Int) -> Void) {
      self.report = report
    }

    func expect(_ bytes: Int) { state.withLock { $0.total += bytes } }

    func add(_ bytes: Int) {
      let now = DispatchTime.now().uptimeNanoseconds
      let due: (Int, Int)? = state.withLock { s in
        s.done += bytes
        guard now - s.reported >= 250_000_000 || s.done >= s.total else { return nil }
        s.reported = now
        return (s.done, s.total)
      }
      if let (done, total) = due { report(done, total) }
    }
  }

  /// Downloads what a merge needs of `repository` at `revision` and returns the snapshot
  /// folder; `log` is told of each file fetched, `progress` of the bytes as they arrive.
  public func download(
    _ repository: HubRepositoryID, revision: String?,
    log: @escaping @Sendable (String) -> Void = { _ in }, progress: Progress? = nil
  ) throws(ModelError) -> String {
    let info = try client.info(repository, revision: revision ?? "main")
    let folder = FileSystem.join(cache.path, repository.cacheFolderName)
    let snapshot = FileSystem.join(FileSystem.join(folder, "snapshots"), info.commit)
    var index: [String: String]?
    let hasSafetensors = info.files.keys.contains { $0.hasSuffix(".safetensors") }
    for name in [ModelFolder.indexFileName, ModelFolder.pickleIndexFileName]
    where index == nil && info.files[name] != nil
      && (name == ModelFolder.indexFileName || !hasSafetensors)
    {
      try fetch(repository, info: info, file: name, log: log)
      index = try ModelFolder.readIndex(FileSystem.join(snapshot, name))
    }
    let names = Self.neededFiles({ info.files[$0] != nil }, index: index)
    for name in names {
      guard let entry = info.files[name] else { continue }
      let blob = FileSystem.join(FileSystem.join(folder, "blobs"), entry.blobID)
      if FileSystem.status(of: blob)?.st_size != off_t(entry.size) {
        let partial = Int(FileSystem.status(of: blob + ".incomplete")?.st_size ?? 0)
        progress?.expect(max(0, entry.size - partial))
      }
    }
    let failures = Mutex<[ModelError]>([])
    DispatchQueue.concurrentPerform(iterations: names.count) { i in
      do {
        try fetch(repository, info: info, file: names[i], log: log, progress: progress)
      } catch {
        failures.withLock { $0.append(Self.described(error, repository: repository)) }
      }
    }
    if let first = failures.withLock({ $0.first }) { throw first }
    if let revision, revision != info.commit {
      try writeReference(revision, commit: info.commit, folder: folder, repository: repository)
    } else if revision == nil {
      try writeReference("main", commit: info.commit, folder: folder, repository: repository)
    }
    return snapshot
  }

  /// Fetches `file` into its blob (unless there) and links it from the snapshot.
  func fetch(
    _ repository: HubRepositoryID, info: HubClient.RepositoryInfo, file: String,
    log: @escaping @Sendable (String) -> Void, progress: Progress? = nil
  ) throws(ModelError) {
    guard let entry = info.files[file] else {
      throw .hub(repository: repository.value, reason: "it has no file '\(file)' at \(info.commit)")
    }
    let folder = FileSystem.join(cache.path, repository.cacheFolderName)
    let blobs = FileSystem.join(folder, "blobs")
    let blob = FileSystem.join(blobs, entry.blobID)
    do {
      try FileSystem.makeDirectories(blobs)
      let lock = try FileLock(
        FileSystem.join(
          FileSystem.join(FileSystem.join(cache.path, ".locks"), repository.cacheFolderName),
          entry.blobID + ".lock"))
      defer { lock.release() }
      if FileSystem.status(of: blob)?.st_size != off_t(entry.size) {
        try receive(
          repository, commit: info.commit, file: file, entry: entry, blob: blob, log: log,
          progress: progress)
      }
      try link(
        file, blob: entry.blobID,
        snapshot: FileSystem.join(FileSystem.join(folder, "snapshots"), info.commit))
    } catch {
      throw Self.described(error, repository: repository)
    }
  }

  /// Downloads `file` into `blob`, resuming `blob.incomplete`, checking its SHA-256.
  private func receive(
    _ repository: HubRepositoryID, commit: String, file: String, entry: HubClient.FileEntry,
    blob: String, log: @escaping @Sendable (String) -> Void, progress: Progress?
  ) throws(ModelError) {
    let partial = blob + ".incomplete"
    for attempt in 0..<2 {
      let sink = try BlobSink(path: partial, expected: entry.size)
      let start = sink.written
      log(
        start > 0
          ? "resuming \(repository)/\(file) at \(start) of \(entry.size) bytes"
          : "downloading \(repository)/\(file) (\(entry.size) bytes)")
      if start < entry.size {
        _ = try client.stream(repository, commit: commit, file: file, from: start) { data in
          let ok = sink.write(data)
          if ok { progress?.add(data.count) }
          return ok
        }
      }
      try sink.finish(path: partial)
      guard sink.written == entry.size else {
        throw .hub(
          repository: repository.value,
          reason:
            "'\(file)' ended after \(sink.written) of \(entry.size) bytes; run again to resume")
      }
      if let expected = entry.sha256 {
        let digest = try Self.sha256(of: partial)
        guard digest == expected else {
          _ = unlink(partial)
          if attempt == 0 {
            log(
              "\(repository)/\(file): SHA-256 \(digest) is not the Hub's \(expected); fetching it again"
            )
            continue
          }
          throw .hub(
            repository: repository.value,
            reason:
              "'\(file)' has SHA-256 \(digest) twice, not the \(expected) the Hub states; it was not kept"
          )
        }
      }
      guard rename(partial, blob) == 0 else {
        throw .io(path: blob, call: "rename", errno: errno)
      }
      return
    }
  }

  /// The SHA-256 of the file at `path`.
  static func sha256(of path: String) throws(ModelError) -> String {
    let (fd, _) = try FileSystem.openRegularFile(path)
    defer { close(fd) }
    let hash = SHA256()
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    while true {
      let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if n < 0 {
        if errno == EINTR { continue }
        throw .io(path: path, call: "read", errno: errno)
      }
      if n == 0 { break }
      buffer.withUnsafeBytes { hash.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
    }
    return hash.hexDigest()
  }

  /// Links `snapshot/file` to the blob, relatively (`../../blobs/ID`, one more `../` per folder
  /// of `file`), as `huggingface_hub` does.
  private func link(_ file: String, blob: String, snapshot: String) throws(ModelError) {
    let path = FileSystem.join(snapshot, file)
    try FileSystem.makeDirectories(FileSystem.directoryName(path))
    let depth = file.split(separator: "/").count - 1
    let target = String(repeating: "../", count: 2 + depth) + "blobs/" + blob
    if FileSystem.linkTarget(path) == target { return }
    // A file another tool put there (a copy, a link of its own) is left as it is; only a
    // dangling link is replaced.
    if FileSystem.kind(of: path) != .missing { return }
    _ = unlink(path)
    guard symlink(target, path) == 0 else { throw .io(path: path, call: "symlink", errno: errno) }
  }

  /// Writes `refs/REVISION` = commit, as `huggingface_hub` does for a branch or tag.
  private func writeReference(
    _ revision: String, commit: String, folder: String, repository: HubRepositoryID
  ) throws(ModelError) {
    guard !revision.contains(".."), !revision.hasPrefix("/") else { return }
    let ref = FileSystem.join(FileSystem.join(folder, "refs"), revision)
    try FileSystem.makeDirectories(FileSystem.directoryName(ref))
    try FileSystem.write(ref, bytes: Array(commit.utf8))
  }

  static func described(_ error: any Error, repository: HubRepositoryID) -> ModelError {
    if let error = error as? ModelError { return error }
    return .hub(repository: repository.value, reason: "\(error)")
  }
}

/// Appends a download to `blob.incomplete` and counts what it holds.
private final class BlobSink: @unchecked Sendable {
  let fd: Int32
  private(set) var written: Int
  private var failed = false

  init(path: String, expected: Int) throws(ModelError) {
    var st = stat()
    var size = stat(path, &st) == 0 ? Int(st.st_size) : 0
    // More than the file holds is not a prefix of it: start over.
    if size > expected {
      _ = unlink(path)
      size = 0
    }
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw .io(path: path, call: "open", errno: errno) }
    written = size
  }

  deinit { close(fd) }

  func write(_ data: Data) -> Bool {
    guard !failed else { return false }
    let ok = data.withUnsafeBytes { raw -> Bool in
      guard let base = raw.baseAddress else { return true }
      var offset = 0
      while offset < raw.count {
        let n = Glibc.write(fd, base + offset, raw.count - offset)
        if n < 0 {
          if errno == EINTR { continue }
          return false
        }
        offset += n
      }
      return true
    }
    if ok { written += data.count } else { failed = true }
    return ok
  }

  func finish(path: String) throws(ModelError) {
    if failed { throw .io(path: path, call: "write", errno: errno) }
    guard fsync(fd) == 0 else { throw .io(path: path, call: "fsync", errno: errno) }
  }
}

/// An exclusive `flock` on a lock file, as `huggingface_hub` takes one per blob.
private final class FileLock {
  let fd: Int32

  init(_ path: String) throws(ModelError) {
    try FileSystem.makeDirectories(FileSystem.directoryName(path))
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw .io(path: path, call: "open", errno: errno) }
    while flock(fd, LOCK_EX) != 0 && errno == EINTR {}
  }

  func release() {
    _ = flock(fd, LOCK_UN)
    close(fd)
  }
}
