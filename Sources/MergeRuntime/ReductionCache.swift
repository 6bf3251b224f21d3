import Dispatch
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
/// (operation, parameters, and for each input the file's device, inode, size, modification and
/// change times in nanoseconds and the position of the tensor's data — what cannot be made to
/// match again cheaply once a file is rewritten), so a changed input, density or seed is a
/// different entry, while a changed weight or λ (which no reduction reads) finds the entries of
/// the last run.
///
/// An entry is not trusted for its name: it holds its own key, the kind of result, the tensor's
/// element count and a checksum, all checked on reading; an entry that fails any check (copied
/// over another, damaged, short) is a miss and is recomputed. Files are written to a temporary
/// name and renamed, so a reader never sees half an entry.
public final class ReductionCache: Sendable {
  /// The folder on disk, or nil for memory only.
  public let directory: String?
  private let memory = Mutex<[String: CachedReduction]>([:])
  private let counters = Mutex<(hits: Int, misses: Int)>((0, 0))

  /// A cache in `directory` (created if missing), or in memory only; an empty path is none.
  public init(directory: String?) {
    self.directory = directory.flatMap { $0.isEmpty ? nil : $0 }
    if let directory = self.directory { try? FileSystem.makeDirectories(directory) }
  }

  /// The default folder: `$MERGE_CACHE_DIR`, else `$XDG_CACHE_HOME/merge`, else
  /// `~/.cache/merge`; empty variables count as unset (as the XDG specification says).
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

  /// The entry for `key`, if there is a sound one for a tensor of `elements` elements.
  func lookup(_ key: String, elements: Int) -> CachedReduction? {
    var found = memory.withLock { $0[key] }
    if found == nil, let directory,
      let bytes = try? FileSystem.read(directory + "/" + key, limit: 1 << 31)
    {
      found = CachedReduction(bytes: bytes, key: key, elements: elements)
      if found != nil { touch(key) }
    }
    counters.withLock { if found == nil { $0.misses += 1 } else { $0.hits += 1 } }
    return found
  }

  /// Keeps `value`, the result for a tensor of `elements` elements, under `key`.
  func store(_ key: String, _ value: CachedReduction, elements: Int) {
    // With a folder, entries live on disk only, so memory does not grow with the model.
    guard let directory else {
      memory.withLock { $0[key] = value }
      return
    }
    let temporary = directory + "/." + key + ".\(getpid())"
    do {
      try FileSystem.write(temporary, bytes: value.bytes(key: key, elements: elements))
      guard rename(temporary, directory + "/" + key) == 0 else {
        unlink(temporary)
        return
      }
    } catch {
      unlink(temporary)
    }
  }
}

/// A cached reduction result.
///
/// On disk (version 3): `MRGC3`, the key's length (u32) and bytes, the element count (u64), the
/// kind (u8) and its payload, then an FNV-1a checksum (u64) of everything before it; integers
/// little-endian.
enum CachedReduction: Sendable {
  case cut(Cut)
  case scalar(Double)

  private static let magic: [UInt8] = Array("MRGC3".utf8)

  func bytes(key: String, elements: Int) -> [UInt8] {
    var out = Self.magic
    func put(_ v: UInt64, _ width: Int = 8) {
      for k in 0..<width { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(k)))) }
    }
    put(UInt64(key.utf8.count), 4)
    out += Array(key.utf8)
    put(UInt64(elements))
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
    put(Self.checksum(out[...]))
    return out
  }

  /// Decodes an entry, or nil unless it is whole, sound, and for `key` and `elements`.
  init?(bytes: [UInt8], key: String, elements: Int) {
    guard bytes.count >= Self.magic.count + 12, bytes.starts(with: Self.magic) else { return nil }
    let body = bytes.dropLast(8)
    var reader = ByteReader(bytes: bytes, position: body.endIndex, end: bytes.count)
    guard reader.integer() == Self.checksum(body) else { return nil }
    reader = ByteReader(bytes: bytes, position: Self.magic.count, end: body.endIndex)
    guard let keyLength = reader.integer(4), let keyBytes = reader.take(Int(keyLength)),
      keyBytes == Array(key.utf8), reader.integer() == UInt64(elements),
      let value = Self.payload(&reader, elements: elements), reader.atEnd
    else { return nil }
    self = value
  }

  private static func payload(_ reader: inout ByteReader, elements: Int) -> CachedReduction? {
    switch reader.byte() {
    case 0: return reader.integer().map { .scalar(Double(bitPattern: $0)) }
    case 1: return .cut(Cut(kind: .nothing))
    case 2: return .cut(Cut(kind: .everything))
    case 3:
      guard let t = reader.integer(), let ties = reader.byte(), let descending = reader.byte()
      else { return nil }
      return .cut(
        Cut(
          kind: .threshold(
            UInt32(truncatingIfNeeded: t), ties: ties != 0, descending: descending != 0)))
    case 4:
      // The ties are a bitset over every element of the tensor.
      guard let t = reader.integer(), let descending = reader.byte(), let n = reader.integer(),
        n == UInt64((elements + 63) / 64)
      else { return nil }
      var words: [UInt64] = []
      words.reserveCapacity(Int(n))
      for _ in 0..<n {
        guard let w = reader.integer() else { return nil }
        words.append(w)
      }
      return .cut(
        Cut(
          kind: .thresholdWithTies(
            UInt32(truncatingIfNeeded: t), descending: descending != 0, ties: Bitset(words: words)))
      )
    default: return nil
    }
  }

  /// FNV-1a, 64 bits.
  static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
    return h
  }
}

/// Reads little-endian integers from `bytes[position..<end]`, nil past the end.
private struct ByteReader {
  let bytes: [UInt8]
  var position: Int
  let end: Int

  var atEnd: Bool { position == end }

  mutating func byte() -> UInt8? {
    guard position < end else { return nil }
    defer { position += 1 }
    return bytes[position]
  }

  mutating func integer(_ width: Int = 8) -> UInt64? {
    guard position + width <= end else { return nil }
    var v: UInt64 = 0
    for k in 0..<width { v |= UInt64(bytes[position + k]) << (8 * UInt64(k)) }
    position += width
    return v
  }

  mutating func take(_ count: Int) -> [UInt8]? {
    guard count >= 0, position + count <= end else { return nil }
    defer { position += count }
    return Array(bytes[position..<position + count])
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
  /// An input from an intermediate stage is named by its identity in `stages` (what computes
  /// it, from what), as ``StageTensors`` works it out.
  static func key(
    _ id: NodeID, graph: TensorGraph, models: [ResolvedModel], stages: [StageKey: String] = [:]
  ) -> String {
    key(id, graph: graph) { input in
      let own = stored(input, models, stages)
      guard let alignment = input.alignment else { return own }
      // Rows laid out in a built vocabulary come from every input, as the alignment says.
      let peers = graph.plan.inputs.map { stored($0, models, stages) }.joined(separator: ";")
      return own + "+aligned[\(alignment.digest)|\(peers)]"
    }
  }

  /// Names input `input`'s stored bytes (and its adapter's).
  private static func stored(
    _ input: TensorInput, _ models: [ResolvedModel], _ stages: [StageKey: String]
  ) -> String {
    let model = models[input.model]
    let weights: String
    if let stage = model.stage {
      // Every stage tensor a run reads has an identity; one without could never match.
      weights =
        stages[StageKey(stage: stage, tensor: input.tensor)]
        ?? "unidentified[\(stage)|\(input.tensor)|\(getpid())|\(DispatchTime.now().uptimeNanoseconds)]"
    } else {
      weights = fingerprint(model.weights, input.tensor)
    }
    if case .taskVector(let sparse)? = input.adapter, let tv = model.taskVector?.weights {
      // An input a task vector changes is also named by the task vector's tensors it reads.
      let names = TaskVectorManifest.sparseNames(input.tensor)
      let read =
        sparse
        ? fingerprint(tv, names.values) + "," + fingerprint(tv, names.indices)
        : fingerprint(tv, input.tensor)
      return weights + "+tv[\(read)]"
    }
    guard let change = input.adapter, let adapter = model.adapter?.weights else {
      return weights
    }
    // An adapted input is also named by the adapter's tensors it reads.
    switch change {
    case .delta(let d):
      return weights
        + "+lora[\(fingerprint(adapter, d.a)),\(fingerprint(adapter, d.b)),\(d.scale.bitPattern),\(d.transposed)]"
    case .replaced(let stored):
      return "replaced[\(fingerprint(adapter, stored))]"
    case .taskVector:
      return weights  // handled above
    }
  }
}

extension RowAlignment {
  /// A digest of the rows that is the same in every process (FNV-1a over their description).
  var digest: String {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    func mix(_ v: Int) {
      for k in 0..<8 {
        h = (h ^ UInt64(UInt8(truncatingIfNeeded: v >> (8 * k)))) &* 0x0000_0100_0000_01b3
      }
    }
    mix(paddedCount)
    for row in rows {
      switch row {
      case .own(let r): mix(1); mix(r)
      case .other(let i, let r): mix(2); mix(i); mix(r)
      case .zero: mix(3)
      case .mean(let sources):
        mix(4); mix(sources.count)
        for s in sources { mix(s.input); mix(s.row) }
      }
    }
    return String(h, radix: 16)
  }
}

extension ReductionCache {

  /// Names tensor `name`'s bytes by its file's identity and status and its offset.
  private static func fingerprint(_ weights: ModelWeights, _ name: String) -> String {
    let file = weights.file(for: name)
    let offset = (file?.header.dataOffset ?? 0) + (file?.info(name)?.dataRange.lowerBound ?? 0)
    let st = FileSystem.status(of: file?.path ?? "") ?? stat()
    return
      "\(st.st_dev):\(st.st_ino)|\(st.st_size)|\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)|\(st.st_ctim.tv_sec).\(st.st_ctim.tv_nsec)|\(offset)"
  }

  /// The version of what the operations compute, part of every key: raised whenever an
  /// operation's results change, so that a cache filled by an older `merge` is not reused for
  /// them (2: linear's weighted sum rounds each term once, as torch's fused `addcmul_`; a
  /// stage tensor read by a reduction is named by what computed it).
  static let numericsVersion = 2

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
          "[\(fingerprint(input))|\(input.info.dtype.rawValue)|\(input.info.shape)|\(graph.plan.inputDType?.rawValue ?? "-")"
        if input.adapter != nil { d += "|\(graph.plan.adapterDType?.rawValue ?? "-")" }
        d += "]"
      }
      d += "(" + node.inputs.map(describe).joined(separator: ",") + ")"
      memo[id.index] = d
      return d
    }
    let text = Array("v\(numericsVersion)|\(describe(id))".utf8)
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
