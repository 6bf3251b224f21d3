#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Small POSIX file helpers that report errno as typed errors.
public enum FileSystem {
  /// What is at a path.
  public enum Kind: Sendable, Hashable {
    case missing, file, directory, other
  }

  /// What is at `path` (following symbolic links).
  public static func kind(of path: String) -> Kind {
    var st = stat()
    guard stat(path, &st) == 0 else { return .missing }
    switch st.st_mode & S_IFMT {
    case S_IFREG: return .file
    case S_IFDIR: return .directory
    default: return .other
    }
  }

  /// The size of the file at `path`, in bytes.
  public static func size(of path: String) throws(ModelError) -> Int {
    var st = stat()
    guard stat(path, &st) == 0 else { throw .io(path: path, call: "stat", errno: errno) }
    return Int(st.st_size)
  }

  /// The names in the directory at `path` that start with `prefix` (all by default), sorted,
  /// without `.` and `..`.
  ///
  /// Filtered before they are sorted: an output's parent such as `/tmp` may hold thousands of
  /// names, of which a run looks for its own few (sorting 8,000 names took ~5 ms of a run).
  public static func contents(of path: String, startingWith prefix: String = "") throws(ModelError)
    -> [String]
  {
    guard let dir = opendir(path) else { throw .io(path: path, call: "opendir", errno: errno) }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
      let name = withUnsafePointer(to: entry.pointee.d_name) {
        $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
      }
      if name != "." && name != ".." && name.hasPrefix(prefix) { names.append(name) }
    }
    return names.sorted()
  }

  /// Opens the regular file at `path` (a symbolic link to one is followed) for reading, and
  /// returns its descriptor and size.
  ///
  /// Input files are hostile: a FIFO would block a plain `open` forever, and a device such as
  /// `/dev/zero` would read without end. The file is opened without blocking and refused unless
  /// it is a regular file.
  public static func openRegularFile(
    _ path: String, followTextLinks: Bool = true
  ) throws(ModelError) -> (fd: Int32, size: Int) {
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else {
      let e = errno
      if e == ENOENT, let target = linkTarget(path) {
        throw .notRegularFile(
          path: path, kind: "a symbolic link to '\(target)', which does not exist,")
      }
      throw .io(path: path, call: "open", errno: e)
    }
    var st = stat()
    guard fstat(fd, &st) == 0 else {
      let e = errno
      close(fd)
      throw .io(path: path, call: "fstat", errno: e)
    }
    guard st.st_mode & S_IFMT == S_IFREG else {
      close(fd)
      throw .notRegularFile(path: path, kind: describeKind(st.st_mode))
    }
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
    if followTextLinks, st.st_size <= textLinkLimit,
      let blob = textLinkTarget(path, fd: fd, size: Int(st.st_size))
    {
      close(fd)
      // The blob itself is opened as it is: a blob written as another link is not followed,
      // so crafted links cannot lead anywhere but one step into `blobs/`.
      return try openRegularFile(blob, followTextLinks: false)
    }
    return (fd, Int(st.st_size))
  }

  /// The longest text file read as a link written out as text.
  static let textLinkLimit = 256

  /// The status of the file at `path`, following symbolic links and links written as text.
  public static func status(of path: String) -> stat? {
    var st = stat()
    guard stat(path, &st) == 0 else { return nil }
    guard st.st_mode & S_IFMT == S_IFREG, st.st_size <= textLinkLimit else { return st }
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { return st }
    defer { close(fd) }
    if let blob = textLinkTarget(path, fd: fd, size: Int(st.st_size)) {
      guard stat(blob, &st) == 0 else { return nil }
    }
    return st
  }

  /// The blob a hub cache snapshot entry names as text, if it is such an entry.
  ///
  /// A copy that could not keep symbolic links writes each link's target into the file
  /// instead (a git checkout with `core.symlinks=false` does): a file under `snapshots/`
  /// holding only `../../blobs/ID` (more `../` in subfolders), where that blob exists.
  /// Anything else is an ordinary file.
  static func textLinkTarget(_ path: String, fd: Int32, size: Int) -> String? {
    guard path.contains("/snapshots/"), size > 0 else { return nil }
    var bytes = [UInt8](repeating: 0, count: size)
    guard pread(fd, &bytes, size, 0) == size else { return nil }
    while let last = bytes.last, last == 0x0A || last == 0x0D { bytes.removeLast() }
    guard let text = String(validating: bytes, as: UTF8.self) else { return nil }
    var rest = Substring(text)
    var ups = 0
    while rest.hasPrefix("../") {
      rest = rest.dropFirst(3)
      ups += 1
    }
    guard ups >= 2, rest.hasPrefix("blobs/") else { return nil }
    let id = rest.dropFirst(6)
    guard (40...64).contains(id.utf8.count),
      id.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
    else { return nil }
    let blob = join(directoryName(path), text)
    return kind(of: blob) == .file ? blob : nil
  }

  /// Where the symbolic link at `path` points, if `path` is one.
  public static func linkTarget(_ path: String) -> String? {
    var buffer = [CChar](repeating: 0, count: 4097)
    let n = readlink(path, &buffer, 4096)
    guard n >= 0 else { return nil }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }

  /// What a non-regular file is, for messages.
  static func describeKind(_ mode: mode_t) -> String {
    switch mode & S_IFMT {
    case S_IFDIR: return "a folder"
    case S_IFIFO: return "a FIFO"
    case S_IFCHR: return "a character device"
    case S_IFBLK: return "a block device"
    case S_IFSOCK: return "a socket"
    default: return "not a regular file"
    }
  }

  /// The whole contents of a small regular file (at most `limit` bytes).
  public static func read(_ path: String, limit: Int = 64 << 20) throws(ModelError) -> [UInt8] {
    let (fd, size) = try openRegularFile(path)
    defer { close(fd) }
    if size > limit {
      throw .tooLarge(path: path, limit: limit)
    }
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
      let n = buffer.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress, $0.count) }
      if n < 0 {
        if errno == EINTR { continue }
        throw .io(path: path, call: "read", errno: errno)
      }
      if n == 0 { break }
      result.append(contentsOf: buffer[0..<n])
      if result.count > limit {
        throw .tooLarge(path: path, limit: limit)
      }
    }
    return result
  }

  /// `path` joined to `name` with one slash.
  public static func join(_ path: String, _ name: String) -> String {
    if path.isEmpty { return name }
    if path.hasSuffix("/") { return path + name }
    return path + "/" + name
  }

  /// The canonical absolute form of `path`, resolving `..` and symbolic links, when it exists.
  public static func realPath(_ path: String) -> String? {
    guard let p = realpath(path, nil) else { return nil }
    defer { free(p) }
    return String(cString: p)
  }

  /// The value of environment variable `name`, if it is set and not empty (an empty value
  /// counts as unset, as the XDG specification and `huggingface_hub` treat it).
  public static func environment(_ name: String) -> String? {
    guard let p = getenv(name), p.pointee != 0 else { return nil }
    return String(cString: p)
  }

  /// `path` with a leading `~` (alone or before `/`) replaced by `$HOME`.
  public static func expandingHome(_ path: String) -> String {
    guard path == "~" || path.hasPrefix("~/"), let home = environment("HOME") else { return path }
    return home + path.dropFirst()
  }

  /// The folder that holds `path` (`.` for a bare name).
  public static func directoryName(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    if slash == path.startIndex { return "/" }
    return String(path[..<slash])
  }
}

extension FileSystem {
  /// Writes `bytes` to a new file at `path`, replacing any file there.
  public static func write(_ path: String, bytes: [UInt8]) throws(ModelError) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw .io(path: path, call: "open", errno: errno) }
    defer { close(fd) }
    try SafetensorsWriter.pwriteAll(fd, bytes, offset: 0, path: path)
  }

  /// Writes `bytes` to `path` whole or not at all: into a file beside it, then renamed over it.
  public static func replace(_ path: String, bytes: [UInt8]) throws(ModelError) {
    let temporary = path + ".\(getpid()).partial"
    do {
      try write(temporary, bytes: bytes)
    } catch {
      unlink(temporary)
      throw error
    }
    guard rename(temporary, path) == 0 else {
      let code = errno
      unlink(temporary)
      throw .io(path: path, call: "rename", errno: code)
    }
  }

  /// Creates the folder `path` and any missing parents (an existing folder is fine).
  public static func makeDirectories(_ path: String) throws(ModelError) {
    if kind(of: path) == .directory { return }
    let parent = directoryName(path)
    if parent != path && !parent.isEmpty { try makeDirectories(parent) }
    guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
      throw .io(path: path, call: "mkdir", errno: errno)
    }
  }

  /// Copies the regular file at `source` (at most `limit` bytes) to `destination`.
  public static func copy(_ source: String, to destination: String, limit: Int = 1 << 30)
    throws(ModelError)
  {
    try write(destination, bytes: try read(source, limit: limit))
  }

  /// Removes `path` and everything under it; errors are ignored (used for cleanup only).
  public static func removeTree(_ path: String) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    if st.st_mode & S_IFMT == S_IFDIR {
      for name in (try? contents(of: path)) ?? [] { removeTree(join(path, name)) }
      rmdir(path)
    } else {
      unlink(path)
    }
  }
}

/// `read(2)`, named apart from `FileSystem.read`.
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
  read(fd, buffer, count)
}
