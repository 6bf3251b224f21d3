import MergeModel

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// The cache folder's upkeep: its entries, least recently used first, and their eviction.
///
/// Only entries are ever removed: files named by a key (32 hexadecimal digits), and temporary
/// files of writers that died (`.KEY.PID`). Anything else in the folder (`calibration.json`, a
/// file of the user's) is left as it is. Reading an entry marks it used (its modification time),
/// so eviction keeps what recent merges read.
extension ReductionCache {
  /// One entry on disk.
  public struct Entry: Sendable {
    public var name: String
    public var bytes: Int
    /// When it was last written or read (seconds since 1970).
    public var used: Int
  }

  /// The default size limit: `MERGE_CACHE_LIMIT` (a byte count such as `4GB`), else 4 GB.
  public static func defaultLimit(parse: (String) -> Int?) -> Int {
    FileSystem.environment("MERGE_CACHE_LIMIT").flatMap(parse) ?? 4_000_000_000
  }

  /// Whether `name` is an entry's file name (or a dead writer's temporary file).
  static func isEntryName(_ name: String) -> Bool {
    func isKey(_ s: Substring) -> Bool {
      s.utf8.count == 32
        && s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
    if isKey(Substring(name)) { return true }
    // `.KEY.PID`, left when a writer was killed between writing and renaming.
    let parts = name.split(separator: ".", omittingEmptySubsequences: false)
    return parts.count == 3 && parts[0].isEmpty && isKey(parts[1])
      && !parts[2].isEmpty && parts[2].allSatisfy(\.isNumber)
  }

  /// The entries in the folder, least recently used first (nothing in memory only).
  public func entries() -> [Entry] {
    guard let directory, let names = try? FileSystem.contents(of: directory) else { return [] }
    var out: [Entry] = []
    for name in names where Self.isEntryName(name) {
      guard let st = FileSystem.status(of: FileSystem.join(directory, name)),
        st.st_mode & S_IFMT == S_IFREG
      else { continue }
      out.append(Entry(name: name, bytes: Int(st.st_size), used: Int(st.st_mtim.tv_sec)))
    }
    return out.sorted { ($0.used, $0.name) < ($1.used, $1.name) }
  }

  /// Removes least recently used entries until the rest take at most `limit` bytes; returns
  /// how many were removed and their bytes.
  @discardableResult
  public func prune(limit: Int) -> (removed: Int, bytes: Int) {
    guard let directory else { return (0, 0) }
    var entries = entries()
    var total = entries.reduce(0) { $0 + $1.bytes }
    var removed = (0, 0)
    while total > limit, !entries.isEmpty {
      let oldest = entries.removeFirst()
      if unlink(FileSystem.join(directory, oldest.name)) == 0 {
        removed.0 += 1
        removed.1 += oldest.bytes
      }
      total -= oldest.bytes
    }
    return removed
  }

  /// Removes every entry; returns how many and their bytes.
  @discardableResult
  public func clear() -> (removed: Int, bytes: Int) { prune(limit: -1) }

  /// Marks entry `key` used now, so that eviction keeps it longer.
  func touch(_ key: String) {
    guard let directory else { return }
    _ = utimensat(AT_FDCWD, FileSystem.join(directory, key), nil, 0)
  }
}
