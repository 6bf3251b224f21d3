import MergeCompiler
import MergeModel
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Keeps the results of reductions — sort prefixes (the costly part of TIES and breadcrumbs)
/// and L1 norms — in memory within a run and on disk across runs.
///
/// Entries are content-addressed: the key describes the reduction and everything it reads
/// (operation, parameters, and for each input the file's path, size, modification time and
/// position of the tensor's data), so a changed input, density or seed is a different entry,
/// while a changed weight or λ (which no reduction reads) finds the entries of the last run.
/// Files are written to a temporary name and renamed, so a reader never sees half an entry;
/// an unreadable entry is recomputed.
public final class ReductionCache: Sendable {
  /// The folder on disk, or nil for memory only.
  public let directory: String?
  private let memory = Mutex<[String: CachedReduction]>([:])
  private let counters = Mutex<(hits: Int, misses: Int)>((0, 0))

  /// A cache in `directory` (created if missing), or in memory only.
  public init(directory: String?) {
    self.directory = directory
    if let directory { try? FileSystem.makeDirectories(directory) }
  }

  /// The default folder: `$MERGE_CACHE_DIR`, else `$XDG_CACHE_HOME/merge`, else `~/.cache/merge`.
  public static var defaultDirectory: String? {
    if let d = FileSystem.environment("MERGE_CACHE_DIR") { return d }
    if let d = FileSystem.environment("XDG_CACHE_HOME") { return d + "/merge" }
    if let home = FileSystem.environment("HOME") {
      _ = mkdir(home + "/.cache", 0o755)
      return home + "/.cache/merge"
    }
    return nil
  }

  /// Hits and misses so far.
  public var statistics: (hits: Int, misses: Int) { counters.withLock { $0 } }

  func lookup(_ key: String) -> CachedReduction? {
    if let hit = memory.withLock({ $0[key] }) {
      counters.withLock { $0.hits += 1 }
      return hit
    }
    if let directory, let bytes = try? FileSystem.read(directory + "/" + key, limit: 1 << 31),
      let value = CachedReduction(bytes: bytes)
    {
      counters.withLock { $0.hits += 1 }
      return value
    }
    counters.withLock { $0.misses += 1 }
    return nil
  }

  func store(_ key: String, _ value: CachedReduction) {
    // With a folder, entries live on disk only, so memory does not grow with the model.
    guard let directory else {
      memory.withLock { $0[key] = value }
      return
    }
    let temporary = directory + "/." + key + ".\(getpid())"
    do {
      try FileSystem.write(temporary, bytes: value.bytes)
      rename(temporary, directory + "/" + key)
    } catch {
      unlink(temporary)
    }
  }
}

/// A cached reduction result.
enum CachedReduction: Sendable {
  case cut(Cut)
  case scalar(Double)

  private static let magic: [UInt8] = Array("MRGC2".utf8)

  var bytes: [UInt8] {
    var out = Self.magic
    func put(_ v: UInt64) {
      for k in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(k)))) }
    }
    switch self {
    case .scalar(let d):
      out.append(0)
      put(d.bitPattern)
    case .cut(let cut):
      switch cut.kind {
      case .nothing: out.append(1)
      case .everything: out.append(2)
      case .threshold(let t, let ties, let descending):
        out.append(3)
        put(UInt64(t))
        out.append(ties ? 1 : 0)
        out.append(descending ? 1 : 0)
      case .thresholdWithTies(let t, let descending, let bits):
        out.append(4)
        put(UInt64(t))
        out.append(descending ? 1 : 0)
        put(UInt64(bits.words.count))
        for w in bits.words { put(w) }
      }
    }
    return out
  }

  init?(bytes: [UInt8]) {
    guard bytes.count >= 6, Array(bytes[0..<5]) == Self.magic else { return nil }
    var i = 6
    func get() -> UInt64? {
      guard i + 8 <= bytes.count else { return nil }
      var v: UInt64 = 0
      for k in 0..<8 { v |= UInt64(bytes[i + k]) << (8 * UInt64(k)) }
      i += 8
      return v
    }
    switch bytes[5] {
    case 0:
      guard let v = get() else { return nil }
      self = .scalar(Double(bitPattern: v))
    case 1: self = .cut(Cut(kind: .nothing))
    case 2: self = .cut(Cut(kind: .everything))
    case 3:
      guard let t = get(), i + 2 <= bytes.count else { return nil }
      self = .cut(
        Cut(
          kind: .threshold(
            UInt32(truncatingIfNeeded: t), ties: bytes[i] != 0, descending: bytes[i + 1] != 0)))
    case 4:
      guard let t = get(), i < bytes.count else { return nil }
      let descending = bytes[i] != 0
      i += 1
      guard let n = get(), n < 1 << 40 else { return nil }
      var words: [UInt64] = []
      words.reserveCapacity(Int(n))
      for _ in 0..<n {
        guard let w = get() else { return nil }
        words.append(w)
      }
      self = .cut(
        Cut(
          kind: .thresholdWithTies(
            UInt32(truncatingIfNeeded: t), descending: descending, ties: Bitset(words: words))))
    default: return nil
    }
  }
}

extension ReductionCache {
  /// Whether an entry for `key` is on disk or in memory (without reading it).
  func contains(_ key: String) -> Bool {
    if memory.withLock({ $0[key] != nil }) { return true }
    guard let directory else { return false }
    var st = stat()
    return stat(directory + "/" + key, &st) == 0
  }

  /// The cache key of reduction `id` of `graph`.
  ///
  /// A 128-bit hash of a canonical description of it and of everything it reads. Needs only the inputs' headers and file status, so a plan
  /// can look entries up without reading tensor data.
  static func key(_ id: NodeID, graph: TensorGraph, models: [ResolvedModel]) -> String {
    key(id, graph: graph) { input in
      let file = models[input.model].weights.file(for: input.tensor)
      let path = file?.path ?? ""
      let offset = (file?.header.dataOffset ?? 0) + input.info.dataRange.lowerBound
      var st = stat()
      _ = stat(path, &st)
      return "\(path)|\(st.st_size)|\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)|\(offset)"
    }
  }

  /// The cache key of reduction `id` of `graph`, each load's file named by `fingerprint`.
  ///
  /// Built from each operation's ``Op/identity`` (never its printed name), the operands in
  /// order, and for each load the fingerprint, the dtype and shape read and the recipe's
  /// `dtype`.
  static func key(_ id: NodeID, graph: TensorGraph, fingerprint: (TensorInput) -> String)
    -> String
  {
    var memo: [Int: String] = [:]
    func describe(_ id: NodeID) -> String {
      if let d = memo[id.index] { return d }
      let node = graph[id]
      var d = node.op.identity
      if case .load(let i) = node.op {
        let input = graph.plan.inputs[i]
        d +=
          "[\(fingerprint(input))|\(input.info.dtype.rawValue)|\(input.info.shape)|\(graph.plan.inputDType?.rawValue ?? "-")]"
      }
      d += "(" + node.inputs.map(describe).joined(separator: ",") + ")"
      memo[id.index] = d
      return d
    }
    let text = Array(describe(id).utf8)
    var a: UInt64 = 0xcbf2_9ce4_8422_2325
    var b: UInt64 = 0x8422_2325_cbf2_9ce4
    for byte in text {
      a = (a ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
      b = (b ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 &+ 0x9E37_79B9
    }
    let hex = { (v: UInt64) -> String in
      let s = String(RandomStream.mix(v), radix: 16)
      return String(repeating: "0", count: 16 - s.count) + s
    }
    return hex(a) + hex(b ^ UInt64(text.count))
  }
}
