internal import CMergeSupport
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// An output folder built beside its destination and moved into place only when complete.
///
/// The promises, each held by a test:
/// - **Atomic.** Files are written into a hidden folder next to the destination
///   (`.NAME.partial-PID-N`); ``commit()`` makes them durable (every file and the folder are
///   `fsync`ed) and moves the folder into place with one `rename` that refuses to replace
///   anything (`RENAME_NOREPLACE`), or, when an existing output is replaced, exchanges the two
///   (`RENAME_EXCHANGE`) so that the destination always holds a complete model. Until then —
///   after an error, ``discard()``, an interruption, or a crash — the destination is as it was.
/// - **Nothing a user owns is deleted.** A destination that exists must be an empty folder,
///   or, with ``Existing/replaceMergeOutput`` (`--force`), a folder holding
///   `mergekit_config.yml`; anything else is refused before any work. A folder that appears at
///   the destination during the run, or an output that changes, is left alone and the commit
///   fails.
/// - **One writer.** A lock file beside the destination (`.NAME.lock`, `flock`) makes a second
///   run into the same destination fail at once instead of silently replacing the first's.
/// - **No leftovers.** Hidden folders left by dead processes beside the destination are removed
///   when the next output folder is created there; if this process dies of a fatal signal, a
///   handler removes its hidden folder (see `merge_fatal_install`).
public final class OutputFolder: Sendable {
  /// What may already be at the destination.
  public enum Existing: Sendable {
    /// Nothing, or an empty folder.
    case refuse
    /// Also a previous merge output (a folder holding `mergekit_config.yml`): `--force`.
    case replaceMergeOutput
    /// Also a folder of partitions (`merge assemble` replacing the partitions it assembled,
    /// `merge run --partition --force` replacing a finished partition): every entry's name
    /// begins with ``partitionPrefix``, or it holds ``partitionManifest``.
    case replacePartitions
  }

  /// The names of `merge run --partition`'s folders inside the output folder begin with this
  /// (and their temporary folders and locks with it after a dot).
  public static let partitionPrefix = "partition-"
  /// The file that marks a finished partition folder.
  public static let partitionManifest = "partition.json"

  /// What a folder found at the destination holds.
  private enum Kind: Sendable, Equatable {
    case empty
    case mergeOutput
    case partitions
  }

  /// What was at the destination when the folder was created.
  private enum Found: Sendable {
    case nothing
    case folder(inode: UInt64, device: UInt64, kind: Kind)
  }

  private enum State { case open, committed, discarded }

  /// The final path.
  public let destination: String
  /// The temporary folder being filled.
  public let temporaryPath: String
  /// The lock file held while the folder is open.
  public let lockPath: String
  private let lockDescriptor: Int32
  private let found: Found
  private let state = Mutex<State>(.open)

  private static let counter = Atomic<Int>(0)
  /// The file whose presence marks a folder as a merge output.
  public static let marker = "mergekit_config.yml"

  /// Creates the temporary folder for `destination`, after checking what is there and taking
  /// its lock.
  public init(destination: String, existing: Existing = .refuse) throws(ModelError) {
    var dest = destination
    while dest.count > 1 && dest.hasSuffix("/") { dest.removeLast() }
    let name = String(dest.split(separator: "/").last ?? Substring(dest))
    guard !["", ".", ".."].contains(name), dest != "/" else {
      throw .outputRefused(
        path: destination, reason: "it is not the name of a folder to create; name the output")
    }
    let parent = FileSystem.directoryName(dest)
    guard FileSystem.kind(of: parent) == .directory else { throw .notFound(path: parent) }
    self.destination = dest
    self.lockPath = FileSystem.join(parent, ".\(name).lock")
    self.lockDescriptor = try Self.lock(lockPath, for: dest)
    do {
      found = try Self.inspect(dest, existing: existing)
    } catch {
      Self.unlock(lockDescriptor, lockPath)
      throw error
    }
    Self.removeStale(in: parent, keeping: name)
    let n = Self.counter.add(1, ordering: .relaxed).newValue
    temporaryPath = FileSystem.join(parent, ".\(name).partial-\(getpid())-\(n)")
    guard mkdir(temporaryPath, 0o755) == 0 else {
      let e = errno
      Self.unlock(lockDescriptor, lockPath)
      throw .io(path: temporaryPath, call: "mkdir", errno: e)
    }
    merge_fatal_register(temporaryPath, lockPath)
  }

  deinit {
    discard()
  }

  /// The path of `name` inside the temporary folder.
  public func path(of name: String) -> String { FileSystem.join(temporaryPath, name) }

  /// Writes a small file into the folder.
  public func write(_ name: String, bytes: [UInt8]) throws(ModelError) {
    try FileSystem.write(path(of: name), bytes: bytes)
  }

  /// Makes the folder's files durable and moves the folder into place.
  ///
  /// - Throws: `ModelError.outputRefused` when the destination changed during the run (the
  ///   folder is then discarded and the destination left as it is); `ModelError.io` when a
  ///   call fails.
  public func commit() throws(ModelError) {
    try state.withLock { (s: inout State) throws(ModelError) in
      guard case .open = s else { return }
      try Self.syncFolder(temporaryPath)
      merge_fatal_unregister()
      switch found {
      case .nothing:
        try Self.move(temporaryPath, to: destination)
      case .folder(let inode, let device, let kind):
        try Self.requireUnchanged(destination, inode: inode, device: device, kind)
        try Self.exchange(temporaryPath, with: destination)
        // The temporary path now holds what was at the destination.
        FileSystem.removeTree(temporaryPath)
      }
      Self.syncDirectory(FileSystem.directoryName(destination))
      Self.unlock(lockDescriptor, lockPath)
      s = .committed
    }
  }

  /// Removes the temporary folder and releases the lock; the destination is untouched.
  public func discard() {
    state.withLock { s in
      guard case .open = s else { return }
      merge_fatal_unregister()
      FileSystem.removeTree(temporaryPath)
      Self.unlock(lockDescriptor, lockPath)
      s = .discarded
    }
  }
}

extension OutputFolder {
  /// Installs the handlers that remove the open output folder (and its lock) when the process
  /// dies of a fatal signal: SIGBUS from an input truncated under its mapping, or a crash.
  public static func cleanUpOnFatalSignals() {
    merge_fatal_install()
  }
}

// MARK: - Checks

extension OutputFolder {
  /// What is at `dest`, if `existing` allows it.
  private static func inspect(_ dest: String, existing: Existing) throws(ModelError) -> Found {
    var st = stat()
    guard lstat(dest, &st) == 0 else {
      guard errno == ENOENT else { throw .io(path: dest, call: "lstat", errno: errno) }
      return .nothing
    }
    guard st.st_mode & S_IFMT == S_IFDIR else {
      throw .outputRefused(path: dest, reason: "it exists and is not a folder")
    }
    let names = try FileSystem.contents(of: dest)
    guard let kind = Self.kind(names) else {
      throw .outputRefused(
        path: dest,
        reason:
          "it exists and is not a merge output (it has no \(marker)); merge never deletes a folder it did not write: remove it or choose another folder"
      )
    }
    switch (kind, existing) {
    case (.empty, _), (.mergeOutput, .replaceMergeOutput), (.partitions, .replacePartitions): break
    case (.mergeOutput, _):
      throw .outputRefused(
        path: dest, reason: "it holds a previous merge output; pass --force to replace it")
    case (.partitions, _):
      throw .outputRefused(
        path: dest,
        reason:
          "it holds partitions of a merge (merge run --partition): assemble them with 'merge assemble', or pass --force to replace a finished partition"
      )
    }
    return .folder(inode: UInt64(st.st_ino), device: UInt64(st.st_dev), kind: kind)
  }

  /// What a folder holding `names` is (nil: not something merge wrote).
  private static func kind(_ names: [String]) -> Kind? {
    if names.isEmpty { return .empty }
    if names.contains(marker) { return .mergeOutput }
    if names.contains(partitionManifest)
      || names.allSatisfy({ $0.hasPrefix(partitionPrefix) || $0.hasPrefix("." + partitionPrefix) })
    {
      return .partitions
    }
    return nil
  }

  /// Throws unless `dest` is still the folder found at the start, as it was.
  private static func requireUnchanged(
    _ dest: String, inode: UInt64, device: UInt64, _ kind: Kind
  ) throws(ModelError) {
    var st = stat()
    let names = (try? FileSystem.contents(of: dest)) ?? []
    guard lstat(dest, &st) == 0, st.st_mode & S_IFMT == S_IFDIR, UInt64(st.st_ino) == inode,
      UInt64(st.st_dev) == device, Self.kind(names) == kind
    else {
      throw .outputRefused(
        path: dest, reason: "it changed while the merge ran; it is left as it is now")
    }
  }
}

// MARK: - Lock

extension OutputFolder {
  /// Takes the lock of `dest` (fails at once when another process holds it).
  private static func lock(_ path: String, for dest: String) throws(ModelError) -> Int32 {
    for _ in 0..<5 {
      let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
      guard fd >= 0 else { throw .io(path: path, call: "open", errno: errno) }
      guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
        let e = errno
        let holder = (try? FileSystem.read(path, limit: 64)).flatMap {
          String(validating: $0, as: UTF8.self)
        }
        close(fd)
        guard e == EWOULDBLOCK else { throw .io(path: path, call: "flock", errno: e) }
        let pid = holder.map { " (pid \($0.filter(\.isNumber)))" } ?? ""
        throw .outputRefused(path: dest, reason: "another merge\(pid) is writing it")
      }
      // The file may have been removed by its last holder between our open and our lock: the
      // lock then guards nothing. Take it again on the file that is there now.
      var held = stat()
      var current = stat()
      guard fstat(fd, &held) == 0, stat(path, &current) == 0, held.st_ino == current.st_ino,
        held.st_dev == current.st_dev
      else {
        close(fd)
        continue
      }
      let pid = Array("\(getpid())\n".utf8)
      _ = ftruncate(fd, 0)
      try? SafetensorsWriter.pwriteAll(fd, pid, offset: 0, path: path)
      return fd
    }
    throw .outputRefused(path: dest, reason: "its lock file \(path) keeps changing")
  }

  private static func unlock(_ fd: Int32, _ path: String) {
    unlink(path)
    close(fd)
  }

  /// Removes hidden folders that dead processes left in `parent` (`.NAME.partial-PID-N`).
  ///
  /// Other partitions' folders are left alone unless they are `name`'s: they may be written
  /// by another machine, whose processes this one cannot see.
  private static func removeStale(in parent: String, keeping name: String) {
    for entry in (try? FileSystem.contents(of: parent, startingWith: ".")) ?? [] {
      if entry.hasPrefix("." + partitionPrefix) && !entry.hasPrefix(".\(name).partial-") {
        continue
      }
      guard let range = entry.ranges(of: ".partial-").last else { continue }
      let rest = entry[range.upperBound...].split(separator: "-")
      guard rest.count == 2, let pid = Int32(rest[0]), Int(rest[1]) != nil else { continue }
      if pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH {
        FileSystem.removeTree(FileSystem.join(parent, entry))
      }
    }
  }
}

// MARK: - Durability and renames

extension OutputFolder {
  /// `fsync`s every file in the flat folder `path`, then the folder itself.
  private static func syncFolder(_ path: String) throws(ModelError) {
    for name in try FileSystem.contents(of: path) {
      let file = FileSystem.join(path, name)
      let fd = open(file, O_RDONLY | O_CLOEXEC)
      guard fd >= 0 else { throw .io(path: file, call: "open", errno: errno) }
      defer { close(fd) }
      guard fsync(fd) == 0 else { throw .io(path: file, call: "fsync", errno: errno) }
    }
    syncDirectory(path)
  }

  /// `fsync`s a folder, so that the names in it are durable (errors are ignored: some file
  /// systems do not sync folders).
  private static func syncDirectory(_ path: String) {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return }
    _ = fsync(fd)
    close(fd)
  }

  /// Renames `source` to `dest`, which must not exist.
  private static func move(_ source: String, to dest: String) throws(ModelError) {
    if renameat2(AT_FDCWD, source, AT_FDCWD, dest, renameNoReplace) == 0 { return }
    var e = errno
    if e == EINVAL || e == ENOSYS {
      // The file system cannot refuse to replace: check, then rename.
      guard FileSystem.kind(of: dest) == .missing else {
        throw .outputRefused(
          path: dest, reason: "it appeared while the merge ran; it is left as it is")
      }
      if rename(source, dest) == 0 { return }
      e = errno
    }
    if e == EEXIST || e == ENOTEMPTY {
      throw .outputRefused(
        path: dest, reason: "it appeared while the merge ran; it is left as it is")
    }
    throw .io(path: dest, call: "rename", errno: e)
  }

  /// Swaps `source` and `dest`, both existing.
  private static func exchange(_ source: String, with dest: String) throws(ModelError) {
    if renameat2(AT_FDCWD, source, AT_FDCWD, dest, renameExchange) == 0 { return }
    let e = errno
    guard e == EINVAL || e == ENOSYS else { throw .io(path: dest, call: "rename", errno: e) }
    // The file system cannot exchange: move the old folder aside, then the new one in.
    let aside = source + ".old"
    guard rename(dest, aside) == 0 else { throw .io(path: dest, call: "rename", errno: errno) }
    guard rename(source, dest) == 0 else {
      let e = errno
      _ = rename(aside, dest)
      throw .io(path: dest, call: "rename", errno: e)
    }
    _ = rename(aside, source)
  }
}

/// `RENAME_NOREPLACE` and `RENAME_EXCHANGE` of `renameat2(2)` (Linux 3.15+).
private let renameNoReplace: UInt32 = 1
private let renameExchange: UInt32 = 2

@_silgen_name("renameat2")
private func renameat2(
  _ oldDirectory: Int32, _ oldPath: UnsafePointer<CChar>, _ newDirectory: Int32,
  _ newPath: UnsafePointer<CChar>, _ flags: UInt32
) -> Int32
