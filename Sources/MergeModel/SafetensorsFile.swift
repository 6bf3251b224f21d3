import Synchronization

/// A safetensors file: its validated header, and its data mapped on first use.
///
/// Opening reads only the header. The data is memory-mapped the first time a tensor's bytes
/// are asked for, so listing, checking and planning never read tensor data.
public final class SafetensorsFile: Sendable {
  /// The file's path.
  public let path: String
  /// The validated header.
  public let header: SafetensorsHeader
  private let mapping = Mutex<MappedFile?>(nil)

  /// Opens the file at `path` and validates its header.
  public init(path: String) throws(ModelError) {
    self.path = path
    self.header = try SafetensorsHeader(path: path)
  }

  /// The weights file at `path`: a PyTorch checkpoint (`.bin`, read by ``TorchCheckpoint``
  /// without running it) or a safetensors file.
  public static func open(_ path: String) throws(ModelError) -> SafetensorsFile {
    if path.hasSuffix(".bin") {
      return SafetensorsFile(path: path, header: try TorchCheckpoint.header(path: path))
    }
    return try SafetensorsFile(path: path)
  }

  /// A file known by a header read another way: a Hub file not downloaded yet (``mapped()``
  /// fails until it is there), or a PyTorch checkpoint (offsets from the start of the file).
  public init(path: String, header: SafetensorsHeader) {
    self.path = path
    self.header = header
  }

  /// The entry for tensor `name`, if the file has it.
  public func info(_ name: String) -> TensorInfo? {
    header.positions[name].map { header.tensors[$0] }
  }

  /// Whether the data has been mapped (tensor data is read only through the mapping).
  public var isMapped: Bool { mapping.withLock { $0 != nil } }

  /// The file's mapping, created on first use.
  public func mapped() throws(ModelError) -> MappedFile {
    try mapping.withLock { (m: inout MappedFile?) throws(ModelError) -> MappedFile in
      if let m { return m }
      let file = try MappedFile(path: path)
      guard file.bytes.count == header.fileSize else {
        throw ModelError.badSafetensors(
          path: path, tensor: nil, reason: "the file changed size while it was open")
      }
      m = file
      return file
    }
  }

  /// A view of tensor `name`'s bytes (maps the file if it is not mapped yet).
  public func tensor(_ name: String) throws(ModelError) -> TensorView {
    guard let info = info(name) else { throw .missingTensor(path: path, tensor: name) }
    let file = try mapped()
    let start = header.dataOffset + info.dataRange.lowerBound
    let bytes = UnsafeRawBufferPointer(rebasing: file.bytes[start..<start + info.byteCount])
    return TensorView(info: info, bytes: bytes, file: file)
  }
}

/// A tensor's bytes inside a mapped file, without a copy.
///
/// Keeps the mapping alive; read-only; safe to share across threads.
public struct TensorView: @unchecked Sendable {
  /// The tensor's name, dtype and shape.
  public let info: TensorInfo
  /// Its bytes.
  public let bytes: UnsafeRawBufferPointer
  /// The mapping that owns the bytes.
  public let file: MappedFile

  /// The number of elements.
  public var count: Int { info.count }

  /// Elements `range` as f64 into `out` (replacing what it held): exact for f64 data, widened
  /// from f32 for the others.
  public func decodeDoubles(_ range: Range<Int>, into out: inout [Double]) {
    out.removeAll(keepingCapacity: true)
    if info.dtype == .float64, let base = bytes.baseAddress {
      for i in range { out.append(base.loadUnaligned(fromByteOffset: i * 8, as: Double.self)) }
      return
    }
    let floats = [Float](unsafeUninitializedCapacity: range.count) { buffer, n in
      decode(range, into: buffer)
      n = range.count
    }
    // Widened in a plain loop over buffers (a lazy map's generic copy was a tenth of
    // `merge diff`).
    out.append(contentsOf: repeatElement(0, count: floats.count))
    out.withUnsafeMutableBufferPointer { o in
      floats.withUnsafeBufferPointer { f in
        for i in 0..<f.count { o[i] = Double(f[i]) }
      }
    }
  }

  /// Where the bytes are in their file's mapping.
  public var fileRange: Range<Int> {
    guard let start = bytes.baseAddress, let base = file.bytes.baseAddress else { return 0..<0 }
    return (start - base)..<(start - base + bytes.count)
  }

  /// Drops the pages of elements `elements` (all by default) from the process; they stay in
  /// the page cache.
  public func release(_ elements: Range<Int>? = nil) {
    let all = fileRange
    guard let elements else { return file.dontNeed(all) }
    let size = info.dtype.byteSize
    file.dontNeed(
      (all.lowerBound + elements.lowerBound * size)..<(all.lowerBound + elements.upperBound * size))
  }

  /// A view of a tensor held whole in `memory` (a stage's tensor, computed in memory).
  public init(info: TensorInfo, memory: MappedFile) {
    self.info = info
    self.bytes = memory.bytes
    self.file = memory
  }

  init(info: TensorInfo, bytes: UnsafeRawBufferPointer, file: MappedFile) {
    self.info = info
    self.bytes = bytes
    self.file = file
  }

  /// Converts elements `range` to `Float` into `destination` (which holds `range.count`).
  ///
  /// Floating-point dtypes widen exactly (f64 rounds to nearest); integer dtypes convert by
  /// value. Unaligned data is read with unaligned loads.
  public func decode(_ range: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) {
    precondition(
      range.lowerBound >= 0 && range.upperBound <= count && destination.count >= range.count)
    guard let src = bytes.baseAddress, let dst = destination.baseAddress else { return }
    let n = range.count
    let first = range.lowerBound
    switch info.dtype {
    case .float32:
      // A copy of the bytes (unaligned data included).
      UnsafeMutableRawPointer(dst).copyMemory(from: src + first * 4, byteCount: n * 4)
    case .bfloat16:
      let start = src + first * 2
      if Int(bitPattern: start) % 2 == 0 {
        // Aligned: a plain loop over UInt16 that the compiler vectorizes.
        let p = start.assumingMemoryBound(to: UInt16.self)
        let out = UnsafeMutableRawPointer(dst).assumingMemoryBound(to: UInt32.self)
        for i in 0..<n { out[i] = UInt32(p[i]) << 16 }
      } else {
        for i in 0..<n {
          dst[i] = FloatConversion.float(
            fromBFloat16: src.loadUnaligned(fromByteOffset: (first + i) * 2, as: UInt16.self))
        }
      }
    case .float16:
      for i in 0..<n {
        dst[i] = FloatConversion.float(
          fromFloat16: src.loadUnaligned(fromByteOffset: (first + i) * 2, as: UInt16.self))
      }
    case .float64:
      for i in 0..<n {
        dst[i] = Float(src.loadUnaligned(fromByteOffset: (first + i) * 8, as: Double.self))
      }
    case .float8E4M3:
      FloatConversion.float8E4M3Table.withUnsafeBufferPointer { table in
        for i in 0..<n { dst[i] = table[Int(src.load(fromByteOffset: first + i, as: UInt8.self))] }
      }
    case .float8E5M2:
      FloatConversion.float8E5M2Table.withUnsafeBufferPointer { table in
        for i in 0..<n { dst[i] = table[Int(src.load(fromByteOffset: first + i, as: UInt8.self))] }
      }
    case .int64:
      for i in 0..<n {
        dst[i] = Float(src.loadUnaligned(fromByteOffset: (first + i) * 8, as: Int64.self))
      }
    case .int32:
      for i in 0..<n {
        dst[i] = Float(src.loadUnaligned(fromByteOffset: (first + i) * 4, as: Int32.self))
      }
    case .int16:
      for i in 0..<n {
        dst[i] = Float(src.loadUnaligned(fromByteOffset: (first + i) * 2, as: Int16.self))
      }
    case .int8:
      for i in 0..<n { dst[i] = Float(src.load(fromByteOffset: first + i, as: Int8.self)) }
    case .uint64:
      for i in 0..<n {
        dst[i] = Float(src.loadUnaligned(fromByteOffset: (first + i) * 8, as: UInt64.self))
      }
    case .uint32:
      for i in 0..<n {
        dst[i] = Float(src.loadUnaligned(fromByteOffset: (first + i) * 4, as: UInt32.self))
      }
    case .uint16:
      for i in 0..<n {
        dst[i] = Float(src.loadUnaligned(fromByteOffset: (first + i) * 2, as: UInt16.self))
      }
    case .uint8, .bool:
      for i in 0..<n { dst[i] = Float(src.load(fromByteOffset: first + i, as: UInt8.self)) }
    }
  }

  /// All elements as `Float` (for tests and small tensors).
  public func floats() -> [Float] {
    [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
      decode(0..<count, into: buffer)
      initialized = count
    }
  }
}
