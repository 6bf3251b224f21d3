internal import CMergeSupport
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// A tensor to be written: its name, dtype and shape, known before any data is.
public struct TensorSpec: Sendable, Hashable {
  /// The tensor's name.
  public var name: String
  /// Its stored dtype.
  public var dtype: DType
  /// Its shape.
  public var shape: [Int]

  /// Creates a spec.
  public init(name: String, dtype: DType, shape: [Int]) {
    self.name = name
    self.dtype = dtype
    self.shape = shape
  }

  /// The number of elements.
  public var count: Int { shape.reduce(1, *) }
  /// The number of bytes.
  public var byteCount: Int { count * dtype.byteSize }
}

/// Where every tensor goes: which shard file, at which byte offset.
///
/// Tensors are assigned to shards in the order given, starting a new shard when the next
/// tensor would take the current one past the byte budget (a tensor larger than the budget
/// gets a shard of its own), as transformers and mergekit split. Within a shard, data is laid
/// out by decreasing element size, then in the order given, so every tensor is aligned for its
/// dtype; the header is padded with spaces to a multiple of 8 bytes.
public struct ShardLayout: Sendable, Hashable {
  /// One output file.
  public struct Shard: Sendable, Hashable {
    /// The file's name (`model.safetensors` or `model-00001-of-00002.safetensors`).
    public var fileName: String
    /// The tensors in data order.
    public var tensors: [TensorSpec]
    /// The complete header, length prefix included.
    public var header: [UInt8]
    /// The byte offset of each tensor's data in the file, by name.
    public var offsets: [String: Int]
    /// The file's final size.
    public var fileSize: Int
  }

  /// The shards in order.
  public var shards: [Shard]
  private var shardOfTensor: [String: Int]

  /// The shard size a merge writes by default (five billion bytes, mergekit's `5B`).
  public static let defaultShardSize = 5_000_000_000

  /// The metadata every shard header carries (`format: pt`, which transformers requires).
  public static let defaultMetadata: [(String, String)] = [("format", "pt")]

  /// Lays out `tensors` in shards of at most `shardSize` bytes (0 means one shard).
  public init(tensors: [TensorSpec], shardSize: Int, metadata: [(String, String)] = defaultMetadata)
  {
    var groups: [[TensorSpec]] = []
    var current: [TensorSpec] = []
    var size = 0
    for t in tensors {
      if !current.isEmpty && shardSize > 0 && size + t.byteCount > shardSize {
        groups.append(current)
        current = []
        size = 0
      }
      current.append(t)
      size += t.byteCount
    }
    if !current.isEmpty || groups.isEmpty { groups.append(current) }
    var shards: [Shard] = []
    var shardOfTensor: [String: Int] = [:]
    for (i, group) in groups.enumerated() {
      let name =
        groups.count == 1
        ? "model.safetensors"
        : "model-\(Self.pad(i + 1))-of-\(Self.pad(groups.count)).safetensors"
      let ordered = group.enumerated().sorted {
        ($0.element.dtype.byteSize, -$0.offset) > ($1.element.dtype.byteSize, -$1.offset)
      }.map(\.element)
      var json = "{\"__metadata__\":{"
      json += metadata.map { "\(JSONValue.quoted($0.0)):\(JSONValue.quoted($0.1))" }.joined(
        separator: ",")
      json += "}"
      var offset = 0
      var relative: [String: Int] = [:]
      for t in ordered {
        json += ",\(JSONValue.quoted(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":["
        json += t.shape.map(String.init).joined(separator: ",")
        json += "],\"data_offsets\":[\(offset),\(offset + t.byteCount)]}"
        relative[t.name] = offset
        offset += t.byteCount
        shardOfTensor[t.name] = i
      }
      json += "}"
      var headerBytes = Array(json.utf8)
      while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
      var header: [UInt8] = []
      let length = UInt64(headerBytes.count)
      for k in 0..<8 { header.append(UInt8(truncatingIfNeeded: length >> (8 * UInt64(k)))) }
      header += headerBytes
      let base = header.count
      shards.append(
        Shard(
          fileName: name, tensors: ordered, header: header,
          offsets: relative.mapValues { $0 + base }, fileSize: base + offset))
    }
    self.shards = shards
    self.shardOfTensor = shardOfTensor
  }

  /// Lays out `tensors` in one file named `fileName` (a task vector's or an adapter's weights,
  /// whose names their formats fix).
  public init(tensors: [TensorSpec], fileName: String, metadata: [(String, String)]) {
    self.init(tensors: tensors, shardSize: 0, metadata: metadata)
    shards[0].fileName = fileName
  }

  /// The same layout with only shards `indices` (their names, headers and offsets unchanged):
  /// what one partition of a merge writes.
  public func restricted(to indices: [Int]) -> ShardLayout {
    var copy = self
    copy.shards = indices.map { shards[$0] }
    copy.shardOfTensor = [:]
    for (i, shard) in copy.shards.enumerated() {
      for t in shard.tensors { copy.shardOfTensor[t.name] = i }
    }
    return copy
  }

  /// The layout of existing safetensors files, their headers byte for byte (`merge apply`
  /// writes a model laid out exactly as its base).
  ///
  /// - Throws: `ModelError` when a file's header cannot be read again.
  public init(copying files: [SafetensorsFile]) throws(ModelError) {
    var shards: [Shard] = []
    var shardOfTensor: [String: Int] = [:]
    for (i, file) in files.enumerated() {
      let (fd, _) = try FileSystem.openRegularFile(file.path)
      defer { close(fd) }
      let header = try SafetensorsHeader.pread(
        fd, path: file.path, count: file.header.dataOffset, offset: 0)
      var offsets: [String: Int] = [:]
      var specs: [TensorSpec] = []
      for t in file.header.tensors {
        offsets[t.name] = file.header.dataOffset + t.dataRange.lowerBound
        specs.append(TensorSpec(name: t.name, dtype: t.dtype, shape: t.shape))
        shardOfTensor[t.name] = i
      }
      shards.append(
        Shard(
          fileName: file.path.split(separator: "/").last.map(String.init) ?? file.path,
          tensors: specs, header: header, offsets: offsets, fileSize: file.header.fileSize))
    }
    self.shards = shards
    self.shardOfTensor = shardOfTensor
  }

  /// The shard that holds tensor `name`, and the byte offset of its data in that file.
  public func location(of name: String) -> (shard: Int, offset: Int)? {
    guard let s = shardOfTensor[name], let o = shards[s].offsets[name] else { return nil }
    return (s, o)
  }

  /// The total size of the shard files.
  public var totalFileSize: Int { shards.reduce(0) { $0 + $1.fileSize } }
  /// The total size of the tensor data (`metadata.total_size` of the index).
  public var totalDataSize: Int {
    shards.reduce(0) { $0 + $1.tensors.reduce(0) { $0 + $1.byteCount } }
  }

  /// The `model.safetensors.index.json` text for a multi-shard layout.
  public func indexJSON() -> String {
    var map: [(String, JSONValue)] = []
    for (i, shard) in shards.enumerated() {
      for t in shard.tensors { map.append((t.name, .string(shards[i].fileName))) }
    }
    map.sort { $0.0 < $1.0 }
    let index = JSONValue.object([
      ("metadata", .object([("total_size", .integer(totalDataSize))])),
      ("weight_map", .object(map)),
    ])
    return index.formatted() + "\n"
  }

  private static func pad(_ n: Int) -> String {
    let s = String(n)
    return String(repeating: "0", count: max(0, 5 - s.count)) + s
  }
}

/// Writes safetensors shards whose headers are known up front: each file gets its header and
/// its full size at once, then tensor data is written to its offsets by any number of threads
/// (`pwrite`), so no shard is ever buffered in memory.
public final class SafetensorsWriter: Sendable {
  /// The layout being written.
  public let layout: ShardLayout
  private let folder: OutputFolder
  private let descriptors: Mutex<[Int32]>
  private let fds: [Int32]

  /// Creates the shard files in `folder` with their headers.
  public init(folder: OutputFolder, layout: ShardLayout) throws(ModelError) {
    self.folder = folder
    self.layout = layout
    var opened: [Int32] = []
    for shard in layout.shards {
      let p = folder.path(of: shard.fileName)
      let fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
      guard fd >= 0 else {
        let e = errno
        for f in opened { close(f) }
        throw .io(path: p, call: "open", errno: e)
      }
      opened.append(fd)
      do {
        try Self.pwriteAll(fd, shard.header, offset: 0, path: p)
      } catch {
        for f in opened { close(f) }
        throw error
      }
      do {
        try Self.reserve(fd, bytes: shard.fileSize, path: p)
      } catch {
        for f in opened { close(f) }
        throw error
      }
    }
    self.fds = opened
    self.descriptors = Mutex(opened)
  }

  deinit {
    descriptors.withLock { fds in
      for fd in fds { close(fd) }
      fds = []
    }
  }

  /// Writes `bytes` as part of tensor `name`'s data, starting `byteOffset` bytes into it.
  public func write(tensor name: String, byteOffset: Int, bytes: UnsafeRawBufferPointer)
    throws(ModelError)
  {
    guard let (shard, offset) = layout.location(of: name) else {
      throw .missingTensor(path: folder.temporaryPath, tensor: name)
    }
    let path = folder.path(of: layout.shards[shard].fileName)
    let start = offset + byteOffset
    try Self.pwriteAll(fds[shard], bytes, offset: start, path: path)
    if let chunk = Self.writeback(after: start..<start + bytes.count) {
      _ = merge_start_writeback(fds[shard], chunk.lowerBound, chunk.count)
    }
  }

  /// Bytes of a shard whose writeback a tensor's writes start as they pass them.
  static let writebackChunk = 2 << 20

  /// The part of a shard to start writing back once the bytes `written` are written.
  ///
  /// When they cross a multiple of `chunk`, the chunk before the one they end in. Blocks are
  /// taken in order, so that one is written by then (a block still in flight in it goes later,
  /// with the rest). A large tensor's bytes then go to disk while it computes, and the last
  /// tensor's no longer wait for the commit's `fsync` (for a 56M-parameter merge: 17 ms with
  /// no chunks, 7.3 ms with 8 MiB ones, 4.8 ms with 2 MiB; medians of ten).
  static func writeback(after written: Range<Int>, chunk: Int = writebackChunk) -> Range<Int>? {
    let crossed = written.upperBound / chunk
    guard crossed > written.lowerBound / chunk, crossed >= 2 else { return nil }
    return (crossed - 2) * chunk..<(crossed - 1) * chunk
  }

  /// Asks the kernel to start writing tensor `name`'s `byteCount` bytes to disk, now.
  ///
  /// It does not wait: the output folder's `fsync` at commit then has little left to wait for
  /// (0.28 s for the benchmark's 509 MB shard when nothing was written ahead, 0.03 s with it).
  /// Errors are ignored: the `fsync` still writes and checks everything.
  public func startWriting(tensor name: String, byteCount: Int) {
    guard let (shard, offset) = layout.location(of: name) else { return }
    _ = merge_start_writeback(fds[shard], offset, byteCount)
  }

  /// Closes the shard files and, for several shards, writes the index (unless told not to: a
  /// partition's layout holds only some of the shards).
  public func finish(writingIndex: Bool = true) throws(ModelError) {
    let toClose = descriptors.withLock { fds -> [Int32] in
      defer { fds = [] }
      return fds
    }
    for (i, fd) in toClose.enumerated() {
      if close(fd) != 0 {
        throw .io(path: folder.path(of: layout.shards[i].fileName), call: "close", errno: errno)
      }
    }
    if writingIndex && layout.shards.count > 1 {
      try folder.write(ModelFolder.indexFileName, bytes: Array(layout.indexJSON().utf8))
    }
  }

  /// Gives the file its full size and, where the file system can, reserves its blocks now
  /// (`fallocate`), so that a full disk fails the run before any tensor is computed rather
  /// than after.
  static func reserve(_ fd: Int32, bytes: Int, path: String) throws(ModelError) {
    if fileAllocate(fd, 0, 0, off_t(bytes)) != 0 {
      let e = errno
      if e == ENOSPC || e == EFBIG || e == EDQUOT {
        throw .io(path: path, call: "fallocate (\(bytes) bytes)", errno: e)
      }
    }
    guard ftruncate(fd, off_t(bytes)) == 0 else {
      throw .io(path: path, call: "ftruncate", errno: errno)
    }
  }

  static func pwriteAll(_ fd: Int32, _ bytes: [UInt8], offset: Int, path: String) throws(ModelError)
  {
    let result = bytes.withUnsafeBytes { raw in
      Result { () throws(ModelError) in try pwriteAll(fd, raw, offset: offset, path: path) }
    }
    try result.get()
  }

  static func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, offset: Int, path: String)
    throws(ModelError)
  {
    guard let base = bytes.baseAddress else { return }
    var done = 0
    while done < bytes.count {
      let n = pwrite(fd, base + done, bytes.count - done, off_t(offset + done))
      if n < 0 {
        if errno == EINTR { continue }
        throw .io(path: path, call: "pwrite", errno: errno)
      }
      done += n
    }
  }
}

/// `fallocate(2)` (Linux): no emulation by writing zeros where a file system lacks it, which
/// `posix_fallocate` would do.
@_silgen_name("fallocate")
private func fileAllocate(_ fd: Int32, _ mode: Int32, _ offset: off_t, _ length: off_t) -> Int32
