#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A `pytorch_model.bin` (torch.save's zip format) read without running anything from it.
///
/// `torch.load` unpickles the file, and a pickle can call any Python function. This reader
/// interprets only what a saved state dict contains: dicts, tuples, numbers and strings; the
/// globals `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, `_rebuild_parameter`
/// and the `torch.*Storage` types; storages as persistent ids. Any other global or opcode is an
/// error naming it. The archive's entries are stored uncompressed, so each tensor is a byte range
/// of the file: the result is a header in safetensors' terms (offsets from the start of the file),
/// and tensors are read through the same mapping as safetensors.
public enum TorchCheckpoint {
  /// The most `data.pkl` may hold.
  static let pickleLimit = 64 << 20

  /// The tensors of the checkpoint at `path`, as a header whose data ranges are offsets in the file.
  public static func header(path: String) throws(ModelError) -> SafetensorsHeader {
    let (fd, size) = try FileSystem.openRegularFile(path)
    defer { close(fd) }
    return try header(size: size, path: path, exactOffsets: true) {
      offset, count throws(ModelError) in
      try SafetensorsHeader.pread(fd, path: path, count: count, offset: offset)
    }
  }

  /// The tensors of a checkpoint of `size` bytes whose bytes `read(offset, count)` gives.
  ///
  /// The bytes come from a file, or as byte ranges of a file on the Hub. Without
  /// `exactOffsets` only the records that are read (the directory, the pickle) are located
  /// exactly; the tensors' data ranges then have their exact sizes but offsets that may be off
  /// by a local header's extra field — enough to check and price a model before it is
  /// downloaded.
  public static func header(
    size: Int, path: String, exactOffsets: Bool,
    read: (Int, Int) throws(ModelError) -> [UInt8]
  ) throws(ModelError) -> SafetensorsHeader {
    func fail(_ reason: String, tensor: String? = nil) -> ModelError {
      .badSafetensors(path: path, tensor: tensor, reason: reason)
    }
    if size > 0, try read(0, 1) == [0x80] {
      throw fail(
        "it is in torch's legacy (pre-1.6) format, a bare pickle; re-save it with a current torch.save or convert it to safetensors"
      )
    }
    var directory = try ZipDirectory(size: size, path: path, exactOffsets: exactOffsets, read: read)
    let entries = directory.entries
    guard let pickleEntry = entries.first(where: { $0.key.hasSuffix("/data.pkl") }) else {
      throw fail(
        "it is not a torch.save zip archive (no data.pkl); merge reads safetensors and zip-format .bin files"
      )
    }
    let prefix = String(pickleEntry.key.dropLast("data.pkl".count))
    if entries[prefix + "byteorder"] != nil {
      let order = try directory.located(prefix + "byteorder", read: read)
      let bytes = try contents(order, path: path, limit: 16, read: read)
      guard bytes == Array("little".utf8) else { throw fail("its byte order is not little-endian") }
    }
    let pickle = try contents(
      try directory.located(pickleEntry.key, read: read), path: path, limit: pickleLimit, read: read
    )
    var machine = PickleMachine(bytes: pickle, path: path)
    let root = try machine.run()
    guard case .dict(let items) = root else {
      throw fail("its pickle is not a dict of tensors (a state dict)")
    }
    // As a Python dict: a key set again keeps its first place and takes the last value.
    var order: [String] = []
    var values: [String: PickleMachine.Value] = [:]
    for (key, value) in items {
      guard case .string(let name) = key else { throw fail("a state dict key is not a string") }
      if values.updateValue(value, forKey: name) == nil { order.append(name) }
    }
    var tensors: [TensorInfo] = []
    for name in order {
      guard let value = values[name] else { continue }
      guard case .tensor(let t) = value else {
        throw fail("the value is not a tensor", tensor: name)
      }
      guard let entry = entries[prefix + "data/" + t.storage] else {
        throw fail("its storage '\(t.storage)' is not in the archive", tensor: name)
      }
      // Sizes from the file are checked before any arithmetic could overflow: the storage
      // bounds every element count and offset.
      let limit = entry.size / t.dtype.byteSize
      // Even an empty tensor's other dimensions must multiply without overflow (everything
      // downstream multiplies them).
      var product = 1
      for dimension in t.shape where dimension != 0 {
        let (p, overflow) = product.multipliedReportingOverflow(by: dimension)
        guard !overflow, p <= 1 << 50 else {
          throw fail("its shape \(t.shape) is implausible", tensor: name)
        }
        product = p
      }
      var count = t.shape.contains(0) ? 0 : 1
      for dimension in t.shape where count > 0 {
        let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
        guard !overflow, product <= limit else {
          throw fail("it reaches past its storage", tensor: name)
        }
        count = product
      }
      var expected = 1
      for (dimension, stride) in zip(t.shape, t.stride).reversed() {
        guard stride == expected || dimension == 1 else {
          throw fail(
            "it is not contiguous (strides \(t.stride) for shape \(t.shape)); save it with .contiguous()",
            tensor: name)
        }
        expected = expected &* dimension
      }
      guard t.offset >= 0, t.offset <= limit, count <= limit - t.offset else {
        throw fail("it reaches past its storage", tensor: name)
      }
      let start = entry.dataOffset + t.offset * t.dtype.byteSize
      let end = start + count * t.dtype.byteSize
      tensors.append(TensorInfo(name: name, dtype: t.dtype, shape: t.shape, dataRange: start..<end))
    }
    return SafetensorsHeader(checkpointTensors: tensors, fileSize: size)
  }

  private static func contents(
    _ entry: ZipDirectory.Entry, path: String, limit: Int,
    read: (Int, Int) throws(ModelError) -> [UInt8]
  ) throws(ModelError) -> [UInt8] {
    guard entry.size <= limit else { throw .tooLarge(path: path, limit: limit) }
    guard entry.size > 0 else { return [] }
    let bytes = try read(entry.dataOffset, entry.size)
    guard bytes.count == entry.size else {
      throw .badSafetensors(path: path, tensor: nil, reason: "the archive is truncated")
    }
    return bytes
  }
}

extension SafetensorsHeader {
  /// The tensors of a checkpoint whose data ranges are offsets from the start of its file.
  init(checkpointTensors tensors: [TensorInfo], fileSize: Int) {
    self.init(unchecked: tensors, dataOffset: 0, fileSize: fileSize)
  }
}

/// The central directory of a zip archive: each entry's stored data, located.
struct ZipDirectory {
  struct Entry {
    /// Where the data starts (provisional until ``exact``: the local header's extra field is
    /// not read).
    var dataOffset: Int
    var size: Int
    /// The local header's offset.
    var local: Int
    var exact: Bool
  }

  var entries: [String: Entry] = [:]
  let path: String
  let size: Int

  init(
    size: Int, path: String, exactOffsets: Bool, read: (Int, Int) throws(ModelError) -> [UInt8]
  ) throws(ModelError) {
    self.path = path
    self.size = size
    func fail(_ reason: String) -> ModelError {
      .badSafetensors(
        path: path, tensor: nil, reason: "it is not a zip archive merge can read: \(reason)")
    }
    func bytes(_ offset: Int, _ count: Int) throws(ModelError) -> [UInt8] {
      guard offset >= 0, count >= 0, offset <= size, count <= size - offset else {
        throw fail("a record lies past the end")
      }
      let b = try read(offset, count)
      guard b.count == count else { throw fail("a record cannot be read") }
      return b
    }
    func u(_ b: [UInt8], _ at: Int, _ width: Int) -> Int {
      var v = 0
      for k in 0..<width { v |= Int(b[at + k]) << (8 * k) }
      return v
    }
    // The end-of-central-directory record, within the last 64 KiB + 22 bytes.
    let tailLength = min(size, 65_557)
    let tail = try bytes(size - tailLength, tailLength)
    guard tailLength >= 22,
      let eocd = stride(from: tailLength - 22, through: 0, by: -1).first(where: {
        u(tail, $0, 4) == 0x0605_4b50
      })
    else { throw fail("no end-of-central-directory record") }
    var count = u(tail, eocd + 10, 2)
    var directory = u(tail, eocd + 16, 4)
    var directorySize = u(tail, eocd + 12, 4)
    // ZIP64: the locator just before it points at the 64-bit record.
    let locatorAt = size - tailLength + eocd - 20
    if locatorAt >= 0, u(try bytes(locatorAt, 4), 0, 4) == 0x0706_4b50 {
      let locator = try bytes(locatorAt, 20)
      let record = try bytes(u(locator, 8, 8), 56)
      guard u(record, 0, 4) == 0x0606_4b50 else { throw fail("a broken ZIP64 record") }
      count = u(record, 32, 8)
      directorySize = u(record, 40, 8)
      directory = u(record, 48, 8)
    }
    // 64-bit fields read as Int may be negative: nothing past 2^63 is plausible.
    guard (0...1_000_000).contains(count), (0...(256 << 20)).contains(directorySize) else {
      throw fail("an implausible directory")
    }
    let central = try bytes(directory, directorySize)
    var at = 0
    for _ in 0..<count {
      guard at + 46 <= central.count, u(central, at, 4) == 0x0201_4b50 else {
        throw fail("a broken central directory")
      }
      let method = u(central, at + 10, 2)
      var compressed = u(central, at + 20, 4)
      var uncompressed = u(central, at + 24, 4)
      let nameLength = u(central, at + 28, 2)
      let extraLength = u(central, at + 30, 2)
      let commentLength = u(central, at + 32, 2)
      var local = u(central, at + 42, 4)
      guard at + 46 + nameLength + extraLength + commentLength <= central.count else {
        throw fail("a broken central directory")
      }
      let name = String(decoding: central[(at + 46)..<(at + 46 + nameLength)], as: UTF8.self)
      // ZIP64 sizes and offset, in the order of the fields that are 0xFFFFFFFF.
      var extra = at + 46 + nameLength
      let extraEnd = extra + extraLength
      while extra + 4 <= extraEnd {
        let id = u(central, extra, 2)
        let length = u(central, extra + 2, 2)
        if id == 1 {
          var field = extra + 4
          if uncompressed == 0xFFFF_FFFF, field + 8 <= extraEnd {
            uncompressed = u(central, field, 8)
            field += 8
          }
          if compressed == 0xFFFF_FFFF, field + 8 <= extraEnd {
            compressed = u(central, field, 8)
            field += 8
          }
          if local == 0xFFFF_FFFF, field + 8 <= extraEnd { local = u(central, field, 8) }
        }
        extra += 4 + length
      }
      at += 46 + nameLength + extraLength + commentLength
      guard uncompressed >= 0, local >= 0 else {
        throw fail("'\(name)' has an impossible size or offset")
      }
      guard method == 0, compressed == uncompressed else {
        throw fail("'\(name)' is compressed; torch.save stores entries uncompressed")
      }
      var entry = Entry(
        dataOffset: local + 30 + nameLength, size: uncompressed, local: local, exact: false)
      if exactOffsets { entry = try Self.locate(entry, name: name, path: path, bytes: bytes) }
      guard entry.dataOffset <= size, uncompressed <= size - entry.dataOffset else {
        throw fail("'\(name)' lies past the end")
      }
      entries[name] = entry
    }
  }

  /// `entry` with its data offset read from its local header.
  static func locate(
    _ entry: Entry, name: String, path: String = "",
    bytes: (Int, Int) throws(ModelError) -> [UInt8]
  ) throws(ModelError) -> Entry {
    let header = try bytes(entry.local, 30)
    guard header.count == 30, header[0] == 0x50, header[1] == 0x4B, header[2] == 3, header[3] == 4
    else {
      throw .badSafetensors(
        path: path, tensor: nil,
        reason: "it is not a zip archive merge can read: a broken local header for '\(name)'")
    }
    var e = entry
    e.dataOffset =
      entry.local + 30 + (Int(header[26]) | Int(header[27]) << 8)
      + (Int(header[28]) | Int(header[29]) << 8)
    e.exact = true
    return e
  }

  /// Entry `name`, its data offset read from its local header if it was not yet.
  mutating func located(_ name: String, read: (Int, Int) throws(ModelError) -> [UInt8])
    throws(ModelError) -> Entry
  {
    guard var entry = entries[name] else {
      throw .badSafetensors(path: path, tensor: nil, reason: "it has no '\(name)'")
    }
    if !entry.exact {
      let size = self.size
      let path = self.path
      entry = try Self.locate(entry, name: name, path: path) { offset, count throws(ModelError) in
        guard offset >= 0, offset <= size, count <= size - offset else {
          throw .badSafetensors(path: path, tensor: nil, reason: "a record lies past the end")
        }
        return try read(offset, count)
      }
      guard entry.dataOffset <= size, entry.size <= size - entry.dataOffset else {
        throw .badSafetensors(path: path, tensor: nil, reason: "'\(name)' lies past the end")
      }
      entries[name] = entry
    }
    return entry
  }
}
