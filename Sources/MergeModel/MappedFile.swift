internal import CMergeSupport

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// A whole file mapped read-only into memory.
///
/// Immutable after `init`: the mapping is `PROT_READ`/`MAP_PRIVATE`, so any number of threads
/// may read it; it is unmapped in `deinit`.
public final class MappedFile: @unchecked Sendable {
  /// The file's path.
  public let path: String
  /// The mapped bytes.
  public let bytes: UnsafeRawBufferPointer
  /// Whether the memory is anonymous (a computed tensor), not a file's pages: it cannot be
  /// dropped and read again, so ``dontNeed(_:)`` leaves it.
  public let isAnonymous: Bool

  /// Maps the file at `path`.
  ///
  /// - Throws: `ModelError.io` naming the failing call and errno.
  public init(path: String) throws(ModelError) {
    self.path = path
    self.isAnonymous = false
    let (fd, size) = try FileSystem.openRegularFile(path)
    defer { close(fd) }
    guard size > 0 else {
      bytes = UnsafeRawBufferPointer(start: nil, count: 0)
      return
    }
    let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
    guard let p, p != MAP_FAILED else { throw .io(path: path, call: "mmap", errno: errno) }
    bytes = UnsafeRawBufferPointer(start: p, count: size)
  }

  /// Zeroed anonymous memory of `size` bytes, known by `name`, which `fill` writes once (from
  /// any threads, to disjoint ranges) before it is read.
  public init(anonymous size: Int, name: String) throws(ModelError) {
    self.path = name
    self.isAnonymous = true
    guard size > 0 else {
      bytes = UnsafeRawBufferPointer(start: nil, count: 0)
      return
    }
    let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    guard let p, p != MAP_FAILED else { throw .io(path: name, call: "mmap", errno: errno) }
    bytes = UnsafeRawBufferPointer(start: p, count: size)
  }

  /// Copies `source` to byte `offset` of anonymous memory (nothing for a file's mapping).
  public func fill(at offset: Int, with source: UnsafeRawBufferPointer) {
    guard isAnonymous, let base = bytes.baseAddress, let from = source.baseAddress,
      offset >= 0, offset + source.count <= bytes.count
    else { return }
    UnsafeMutableRawPointer(mutating: base + offset).copyMemory(from: from, byteCount: source.count)
  }

  deinit {
    if let base = bytes.baseAddress {
      munmap(UnsafeMutableRawPointer(mutating: base), bytes.count)
    }
  }

  /// Asks the kernel to have `range` ready before it is used.
  ///
  /// Pages all in the page cache are mapped now (`MADV_POPULATE_READ`, Linux 5.14+), before the
  /// computation that reads them rather than by its page faults (the CPU time is about the
  /// same: 6.4–6.7 ms per 110 MB either way on the development VM). Otherwise the kernel is
  /// asked to read them ahead (`MADV_WILLNEED`), which returns at once: populating would wait
  /// for the disk on the caller's thread (task_arithmetic with cold inputs: 2.3–3.1 s
  /// populating, 1.7–1.8 s reading ahead).
  public func willNeed(_ range: Range<Int>) {
    if !populateIfCached(range) { readAhead(range) }
  }

  /// Maps `range` now if all of it is in the page cache (`MADV_POPULATE_READ`); whether it did.
  public func populateIfCached(_ range: Range<Int>) -> Bool {
    isCached(range) && advise(range, 22)  // MADV_POPULATE_READ
  }

  /// Asks the kernel to read `range` into the page cache, without mapping it into this process
  /// (`MADV_WILLNEED`; returns at once).
  public func readAhead(_ range: Range<Int>) {
    if isAnonymous { return }
    advise(range, MADV_WILLNEED)
  }

  /// Whether every page of `range` is in the page cache.
  ///
  /// One `cachestat` of the file, opened again by its path (a few microseconds), where the
  /// kernel has it; else `mincore` on this mapping, which looks up every page: 0.1 ms against
  /// 0.7 ms for a 110 MB input read by `cat`. Asked before every step's inputs are mapped. (A
  /// file replaced since it was mapped only makes the answer wrong, never the data.)
  func isCached(_ range: Range<Int>, cachestat: Bool = true) -> Bool {
    guard let base = bytes.baseAddress, !range.isEmpty, !isAnonymous else { return true }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let start = max(0, range.lowerBound) / page * page
    let end = min(bytes.count, range.upperBound)
    guard end > start else { return true }
    let pages = (end - start + page - 1) / page
    let fd = cachestat ? open(path, O_RDONLY | O_CLOEXEC) : -1
    if fd >= 0 {
      defer { close(fd) }
      var cached: UInt64 = 0
      if merge_cached_pages(fd, start, pages * page, &cached) == 0 { return cached >= pages }
    }
    var vector = [UInt8](repeating: 0, count: pages)
    guard mincore(UnsafeMutableRawPointer(mutating: base + start), end - start, &vector) == 0
    else { return false }
    return vector.allSatisfy { $0 & 1 != 0 }
  }

  /// Tells the kernel that `range` will not be needed again, so its pages can be dropped.
  public func dontNeed(_ range: Range<Int>) {
    if isAnonymous { return }
    advise(range, MADV_DONTNEED)
  }

  /// Bytes of `range` of the file at `path` that are in the page cache.
  ///
  /// Asks `mincore` about a mapping it never touches, so no data is read; answers all of them
  /// when that cannot be told.
  public static func cachedBytes(path: String, range: Range<Int>) -> Int {
    guard !range.isEmpty else { return 0 }
    guard let (fd, _) = try? FileSystem.openRegularFile(path) else { return range.count }
    defer { close(fd) }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let start = range.lowerBound / page * page
    let length = range.upperBound - start
    guard let p = mmap(nil, length, PROT_READ, MAP_SHARED, fd, off_t(start)), p != MAP_FAILED
    else { return range.count }
    defer { munmap(p, length) }
    let pages = (length + page - 1) / page
    var vector = [UInt8](repeating: 0, count: pages)
    guard mincore(p, length, &vector) == 0 else { return range.count }
    var resident = 0
    for (i, v) in vector.enumerated() where v & 1 != 0 {
      let lo = max(range.lowerBound, start + i * page)
      let hi = min(range.upperBound, start + (i + 1) * page)
      resident += max(0, hi - lo)
    }
    return resident
  }

  @discardableResult
  private func advise(_ range: Range<Int>, _ advice: Int32) -> Bool {
    guard let base = bytes.baseAddress, !range.isEmpty else { return true }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let start = max(0, range.lowerBound) / page * page
    let end = min(bytes.count, range.upperBound)
    guard end > start else { return true }
    return madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, advice) == 0
  }
}
