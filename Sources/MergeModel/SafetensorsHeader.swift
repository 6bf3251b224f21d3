#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// One tensor's entry in a safetensors header.
public struct TensorInfo: Sendable, Hashable {
  /// The tensor's name.
  public var name: String
  /// Its element type.
  public var dtype: DType
  /// Its shape, row-major.
  public var shape: [Int]
  /// Its bytes, relative to the start of the data section.
  public var dataRange: Range<Int>

  /// Creates an entry.
  public init(name: String, dtype: DType, shape: [Int], dataRange: Range<Int>) {
    self.name = name
    self.dtype = dtype
    self.shape = shape
    self.dataRange = dataRange
  }

  /// The number of elements.
  public var count: Int { shape.reduce(1, *) }
  /// The number of bytes.
  public var byteCount: Int { dataRange.count }
}

/// A validated safetensors header: where each tensor's bytes are, and the metadata.
///
/// The header is hostile input. Reading it checks: the 8-byte length is bounded and inside
/// the file; the header is a JSON object without duplicate keys; every tensor names a known
/// dtype, has a non-negative shape whose element count and byte size do not overflow and
/// equal its byte range; ranges are ordered, inside the data section, do not overlap, and
/// cover it without holes or trailing bytes (as the safetensors library requires). Each
/// failure names the file and the tensor.
public struct SafetensorsHeader: Sendable, Hashable {
  /// The largest header accepted (the safetensors library's limit).
  public static let maximumHeaderLength = 100_000_000

  /// The tensors in header order.
  public private(set) var tensors: [TensorInfo]
  /// Each tensor's position in ``tensors``, by name.
  package let positions: [String: Int]
  /// `__metadata__`, string to string.
  public var metadata: [(String, String)]
  /// The byte offset of the data section in the file (8 + header length).
  public var dataOffset: Int
  /// The file's size in bytes.
  public var fileSize: Int

  public static func == (a: Self, b: Self) -> Bool {
    a.tensors == b.tensors && a.dataOffset == b.dataOffset && a.fileSize == b.fileSize
      && a.metadata.map(\.0) == b.metadata.map(\.0) && a.metadata.map(\.1) == b.metadata.map(\.1)
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(tensors)
    hasher.combine(dataOffset)
  }

  /// Reads and validates the header of the file at `path` (the header only: no tensor data).
  public init(path: String) throws(ModelError) {
    let (fd, size) = try FileSystem.openRegularFile(path)
    defer { close(fd) }
    let prefix = try Self.pread(fd, path: path, count: min(8, size), offset: 0)
    try self.init(prefix: prefix, fileSize: size, path: path) { count, offset throws(ModelError) in
      try Self.pread(fd, path: path, count: count, offset: offset)
    }
  }

  /// The header of tensors laid out one after another from offset 0, which no file holds (a
  /// stage's output, computed in memory).
  public init(laidOut tensors: [TensorInfo]) {
    self.init(
      unchecked: tensors, dataOffset: 0, fileSize: tensors.last?.dataRange.upperBound ?? 0)
  }

  /// A header built by another reader (a PyTorch checkpoint's tensors), taken as it is.
  init(unchecked tensors: [TensorInfo], dataOffset: Int, fileSize: Int) {
    self.tensors = tensors
    var positions: [String: Int] = [:]
    for (i, t) in tensors.enumerated() { positions[t.name] = i }
    self.positions = positions
    self.metadata = []
    self.dataOffset = dataOffset
    self.fileSize = fileSize
  }

  /// Validates a header held in memory: `bytes` is the whole file, or at least its first
  /// 8 + header-length bytes when `fileSize` gives the real size.
  public init(bytes: [UInt8], fileSize: Int? = nil, path: String) throws(ModelError) {
    try self.init(bytes: bytes, fileSize: fileSize, path: path, fastReader: true)
  }

  /// As ``init(bytes:fileSize:path:)``; without `fastReader`, through the general JSON reader
  /// alone (the fuzz target checks that both readers agree).
  package init(bytes: [UInt8], fileSize: Int? = nil, path: String, fastReader: Bool)
    throws(ModelError)
  {
    let size = fileSize ?? bytes.count
    try self.init(prefix: Array(bytes.prefix(8)), fileSize: size, path: path, fast: fastReader) {
      count, offset throws(ModelError) in
      guard offset + count <= bytes.count else {
        throw .badSafetensors(path: path, tensor: nil, reason: "the file is truncated")
      }
      return Array(bytes[offset..<offset + count])
    }
  }

  private init(
    prefix: [UInt8], fileSize size: Int, path: String, fast: Bool = true,
    read: (Int, Int) throws(ModelError) -> [UInt8]
  ) throws(ModelError) {
    let fail = Failure(path: path)
    let headerLength = try Self.headerLength(prefix, fileSize: size, fail)
    let headerBytes = try read(headerLength, 8)
    let dataLength = size - 8 - headerLength
    let entries: FastHeaderReader.Entries
    if fast, let sound = FastHeaderReader.read(headerBytes, dataLength: dataLength) {
      entries = sound
    } else {
      entries = try Self.entries(headerBytes, dataLength: dataLength, fail)
    }
    try Self.checkTiling(entries.tensors, dataLength: dataLength, fail)
    self.tensors = entries.tensors
    self.positions = entries.positions
    self.metadata = entries.metadata
    self.dataOffset = 8 + headerLength
    self.fileSize = size
  }

  /// The header's tensors and metadata read through the general JSON parser, each field
  /// checked and each failure worded.
  private static func entries(_ headerBytes: [UInt8], dataLength: Int, _ fail: Failure)
    throws(ModelError) -> FastHeaderReader.Entries
  {
    let json: JSONValue
    do {
      json = try JSONValue.parse(headerBytes, rejectingDuplicateKeys: true)
    } catch {
      throw fail("the header is not valid JSON (\(error.reason) at byte \(8 + error.offset))")
    }
    guard let members = json.objectValue else {
      throw fail("the header is not a JSON object")
    }
    var entries = FastHeaderReader.Entries()
    for (name, value) in members {
      if name == "__metadata__" {
        guard let members = value.objectValue else { throw fail("__metadata__ is not an object") }
        for (k, v) in members {
          guard let s = v.stringValue else {
            throw fail("__metadata__ value '\(k)' is not a string")
          }
          entries.metadata.append((k, s))
        }
        continue
      }
      entries.positions[name] = entries.tensors.count
      entries.tensors.append(try Self.tensor(name, value, dataLength: dataLength, fail))
    }
    return entries
  }

  /// Makes the error of a malformed file at `path`.
  private struct Failure {
    let path: String
    func callAsFunction(_ reason: String, tensor: String? = nil) -> ModelError {
      .badSafetensors(path: path, tensor: tensor, reason: reason)
    }
  }

  /// The header length the first 8 bytes give, checked against the file's size.
  private static func headerLength(_ prefix: [UInt8], fileSize size: Int, _ fail: Failure)
    throws(ModelError) -> Int
  {
    if size == 0 { throw fail("the file is empty") }
    if size < 8 {
      throw fail(
        "the file is \(size) bytes, shorter than the 8-byte header length that starts a safetensors file"
      )
    }
    var length: UInt64 = 0
    for (i, b) in prefix.prefix(8).enumerated() { length |= UInt64(b) << (8 * UInt64(i)) }
    if length > UInt64(Self.maximumHeaderLength) {
      throw fail(
        "the header length \(length) is larger than the \(Self.maximumHeaderLength)-byte limit; this is not a safetensors file"
      )
    }
    let headerLength = Int(length)
    if 8 + headerLength > size {
      throw fail("the header length \(headerLength) runs past the end of the file (\(size) bytes)")
    }
    if headerLength < 2 {
      throw fail("the header is \(headerLength) bytes, too short for a JSON object")
    }
    return headerLength
  }

  /// The header entry of tensor `name`, checked: fields, dtype, shape, byte range.
  private static func tensor(
    _ name: String, _ value: JSONValue, dataLength: Int, _ fail: Failure
  ) throws(ModelError) -> TensorInfo {
    guard let entry = value.objectValue else {
      throw fail("its entry is not an object", tensor: name)
    }
    for (key, _) in entry where !["dtype", "shape", "data_offsets"].contains(key) {
      throw fail("unknown field '\(key)'", tensor: name)
    }
    guard let dtypeName = value["dtype"]?.stringValue else {
      throw fail("it has no dtype", tensor: name)
    }
    guard let dtype = DType(safetensorsName: dtypeName) else {
      throw fail("unknown dtype '\(dtypeName)'", tensor: name)
    }
    guard let shapeValues = value["shape"]?.arrayValue else {
      throw fail("it has no shape", tensor: name)
    }
    let (shape, count) = try Self.shape(shapeValues, of: name, fail)
    let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize)
    guard !overflow else {
      throw fail(
        "its shape \(Self.describe(shapeValues)) has more bytes than can be addressed",
        tensor: name)
    }
    guard let offsets = value["data_offsets"]?.arrayValue, offsets.count == 2,
      case .number(let a) = offsets[0], case .number(let b) = offsets[1],
      let begin = Int(a), let end = Int(b)
    else {
      throw fail("data_offsets is not a pair of integers", tensor: name)
    }
    guard begin >= 0, end >= 0 else {
      throw fail("data_offsets [\(begin), \(end)] is negative", tensor: name)
    }
    guard begin <= end else {
      throw fail("data_offsets [\(begin), \(end)] is reversed", tensor: name)
    }
    guard end - begin == bytes else {
      throw fail(
        "its shape \(shape) of \(dtype.rawValue) needs \(bytes) bytes, but data_offsets [\(begin), \(end)] holds \(end - begin)",
        tensor: name)
    }
    guard end <= dataLength else {
      throw fail(
        "data_offsets [\(begin), \(end)] lies past the end of the data section (\(dataLength) bytes): the file is truncated",
        tensor: name)
    }
    return TensorInfo(name: name, dtype: dtype, shape: shape, dataRange: begin..<end)
  }

  /// A shape's dimensions and element count, checked for integers, signs and overflow.
  private static func shape(_ values: [JSONValue], of name: String, _ fail: Failure)
    throws(ModelError) -> (shape: [Int], count: Int)
  {
    var shape: [Int] = []
    var count = 1
    for dim in values {
      guard case .number(let text) = dim, let n = Int(text) else {
        throw fail(
          "its shape \(Self.describe(values)) holds a value that is not an integer", tensor: name)
      }
      guard n >= 0 else {
        throw fail("its shape \(Self.describe(values)) has a negative dimension", tensor: name)
      }
      let (product, overflow) = count.multipliedReportingOverflow(by: n)
      guard !overflow else {
        throw fail(
          "its shape \(Self.describe(values)) has more elements than can be addressed",
          tensor: name)
      }
      count = product
      shape.append(n)
    }
    return (shape, count)
  }

  /// The tensors' byte ranges tile the data section: no overlaps, no holes, no trailing bytes.
  private static func checkTiling(_ tensors: [TensorInfo], dataLength: Int, _ fail: Failure)
    throws(ModelError)
  {
    // Writers store tensors in offset order; then there is nothing to sort.
    var inOrder = true
    var end = 0
    for t in tensors {
      if t.dataRange.lowerBound != end { inOrder = false; break }
      end = t.dataRange.upperBound
    }
    if inOrder, end == dataLength { return }
    let ordered = tensors.sorted {
      ($0.dataRange.lowerBound, $0.dataRange.upperBound) < (
        $1.dataRange.lowerBound, $1.dataRange.upperBound
      )
    }
    var position = 0
    var previous: String?
    for t in ordered {
      if t.dataRange.lowerBound < position, let previous {
        throw fail(
          "its bytes [\(t.dataRange.lowerBound), \(t.dataRange.upperBound)) overlap those of '\(previous)'",
          tensor: t.name)
      }
      if t.dataRange.lowerBound > position {
        throw fail(
          "the data section has a hole at bytes [\(position), \(t.dataRange.lowerBound)) before this tensor",
          tensor: t.name)
      }
      position = t.dataRange.upperBound
      previous = t.name
    }
    if position != dataLength {
      throw fail(
        "the data section holds \(dataLength) bytes but its tensors account for \(position)")
    }
  }

  private static func describe(_ values: [JSONValue]) -> String {
    "["
      + values.map { v -> String in
        switch v {
        case .number(let s): return s
        case .string(let s): return "\"\(s)\""
        default: return "…"
        }
      }.joined(separator: ", ") + "]"
  }

  static func pread(_ fd: Int32, path: String, count: Int, offset: Int) throws(ModelError)
    -> [UInt8]
  {
    guard count > 0 else { return [] }
    var buffer = [UInt8](repeating: 0, count: count)
    var done = 0
    while done < count {
      let n = buffer.withUnsafeMutableBytes { raw -> Int in
        guard let base = raw.baseAddress else { return 0 }
        return systemPread(fd, base + done, count - done, off_t(offset + done))
      }
      if n < 0 {
        if errno == EINTR { continue }
        throw .io(path: path, call: "pread", errno: errno)
      }
      if n == 0 { throw .badSafetensors(path: path, tensor: nil, reason: "the file is truncated") }
      done += n
    }
    return buffer
  }
}

/// `pread(2)`, named apart from the static method above.
private func systemPread(
  _ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, _ offset: off_t
) -> Int {
  pread(fd, buffer, count, offset)
}
