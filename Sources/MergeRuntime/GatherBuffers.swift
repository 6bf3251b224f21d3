import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Anonymous memory mapped for one buffer of a selection's gathered magnitudes, whose pages can
/// be handed back to the system before the buffer is freed (with `MADV_DONTNEED`: they read as
/// zeros if touched again).
///
/// A reusable buffer's mapping goes to the ``GatherPages`` pool when it is freed, so that the
/// next tensor's gather writes pages that are already there: the kernel zeroes every fresh
/// page, which on the development VM cost a TIES merge of the benchmark models about 0.45 s of
/// system time (1.47 → 1.02 s warm, 1.86 → 1.41 s cold). The memory is never read before the
/// gather writes it.
final class PageBuffer<Element>: @unchecked Sendable {
  let pointer: UnsafeMutablePointer<Element>
  /// The mapping (nil when mapping failed and the buffer was allocated).
  private let mapping: GatherPages.Mapping?
  private let reusable: Bool
  private let pool: GatherPages

  private init(count: Int, mapping: GatherPages.Mapping?, reusable: Bool, pool: GatherPages) {
    self.mapping = mapping
    self.reusable = reusable
    self.pool = pool
    if let mapping {
      pointer = mapping.start.bindMemory(to: Element.self, capacity: count)
    } else {
      pointer = UnsafeMutablePointer<Element>.allocate(capacity: count)
    }
  }

  /// `copies` buffers of `count` elements: mappings from the pool where one fits (`reusable`),
  /// fresh ones for the rest, mapped after the pool has unmapped as many bytes as they take.
  static func many(
    _ copies: Int, count: Int, reusable: Bool, pool: GatherPages = .shared
  ) -> [PageBuffer] {
    let bytes = max(1, count) * MemoryLayout<Element>.stride
    let kept = pool.reuse(bytes, copies: reusable ? copies : 0)
    return (0..<copies).map { k in
      let mapping = k < kept.count ? kept[k] : pool.map(bytes, reusable: reusable)
      return PageBuffer(count: max(1, count), mapping: mapping, reusable: reusable, pool: pool)
    }
  }

  deinit {
    if let mapping {
      pool.free(mapping, reusable: reusable)
    } else {
      pointer.deallocate()
    }
  }

  /// Hands back the whole pages inside elements `range`.
  func release(_ range: Range<Int>) {
    guard let mapping, !range.isEmpty else { return }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let stride = MemoryLayout<Element>.stride
    let start = (range.lowerBound * stride + page - 1) / page * page
    let end = min(mapping.bytes, range.upperBound * stride) / page * page
    guard end > start else { return }
    madvise(mapping.start + start, end - start, MADV_DONTNEED)
  }
}

/// The mappings of the gather buffers that the last selection passes freed, kept for the next
/// pass's gather.
///
/// A pass takes the kept mappings that fit its buffers (the smallest at least their size) and
/// unmaps others, as many bytes as it maps fresh, before it maps any; reading the next tensor
/// ahead unmaps as many as its inputs map beyond the current tensor's. So the pool and what
/// replaces it hold no more than the pool did or the new memory needs.
///
/// Only passes whose inputs stay mapped give their buffers back (those that release their
/// inputs are a run's largest, and their final pass maps the inputs again), and none is kept
/// while such a pass's buffers are alive (a smaller tensor may be computed beside it).
/// ``MergeRunner`` empties the shared pool when a run ends.
final class GatherPages: Sendable {
  /// The pool of every run in the process.
  static let shared = GatherPages()

  /// One anonymous mapping.
  struct Mapping: @unchecked Sendable {
    let start: UnsafeMutableRawPointer
    let bytes: Int

    func unmap() { munmap(start, bytes) }
  }

  /// The kept mappings, and how many buffers that are not reusable are alive.
  private let state = Mutex<(kept: [Mapping], unkept: Int)>(([], 0))

  /// A fresh mapping of `bytes`, with huge pages where the kernel offers them on request (one
  /// fault and one zeroed page per 2 MB instead of per 4 KB); nil when mapping fails.
  func map(_ bytes: Int, reusable: Bool) -> Mapping? {
    guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
      p != MAP_FAILED
    else { return nil }
    if bytes >= 4 << 20 { madvise(p, bytes, 14) }  // MADV_HUGEPAGE
    if !reusable { state.withLock { $0.unkept += 1 } }
    return Mapping(start: p, bytes: bytes)
  }

  /// Up to `copies` kept mappings of at least `bytes` each (the smallest that fit), after
  /// making room for the fresh mappings the pass still needs (all of the pool when `copies` is
  /// 0).
  func reuse(_ bytes: Int, copies: Int) -> [Mapping] {
    let (taken, unused) = state.withLock { s -> ([Mapping], [Mapping]) in
      var taken: [Mapping] = []
      while taken.count < copies {
        let fitting = s.kept.indices.filter { s.kept[$0].bytes >= bytes }
        guard let i = fitting.min(by: { s.kept[$0].bytes < s.kept[$1].bytes }) else { break }
        taken.append(s.kept.remove(at: i))
      }
      let needed = copies == 0 ? Int.max : (copies - taken.count) * bytes
      return (taken, Self.evict(needed, from: &s.kept))
    }
    for m in unused { m.unmap() }
    return taken
  }

  /// Unmaps kept mappings, the largest first, until `bytes` are free: what is about to be
  /// mapped (a pass's buffers, the next tensor's inputs read ahead) takes their place.
  func makeRoom(_ bytes: Int) {
    guard bytes > 0 else { return }
    for m in state.withLock({ Self.evict(bytes, from: &$0.kept) }) { m.unmap() }
  }

  /// Removes mappings from `kept`, the largest first, until their bytes reach `bytes`.
  private static func evict(_ bytes: Int, from kept: inout [Mapping]) -> [Mapping] {
    kept.sort { $0.bytes < $1.bytes }
    var evicted: [Mapping] = []
    var freed = 0
    while freed < bytes, let largest = kept.popLast() {
      evicted.append(largest)
      freed += largest.bytes
    }
    return evicted
  }

  /// Keeps a freed reusable buffer's mapping for the next pass, unless a buffer that is not
  /// reusable is alive; unmaps it otherwise.
  func free(_ mapping: Mapping, reusable: Bool) {
    let kept = state.withLock { s -> Bool in
      if !reusable { s.unkept -= 1 }
      guard reusable && s.unkept == 0 else { return false }
      s.kept.append(mapping)
      return true
    }
    if !kept { mapping.unmap() }
  }

  /// Unmaps every kept mapping.
  func empty() {
    for m in state.withLock({ s in
      defer { s.kept = [] }; return s.kept
    }) { m.unmap() }
  }

  /// Bytes kept now.
  var keptBytes: Int { state.withLock { $0.kept.reduce(0) { $0 + $1.bytes } } }
}
