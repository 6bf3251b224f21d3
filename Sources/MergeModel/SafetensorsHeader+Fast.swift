/// A reader for well-formed safetensors headers that builds ``TensorInfo`` values straight
/// from the bytes, in one pass, without a JSON tree.
///
/// A header of a million tensors is 70–100 MB of JSON; building and freeing a tree of values
/// for it took seconds. This reader accepts only what a sound header is — an object of tensor
/// entries (`dtype`, `shape`, `data_offsets`, each once) and an optional `__metadata__` object
/// of strings, names without escapes, integers without signs, fractions or exponents, no
/// duplicate names — and answers nil for anything else, in which case the header is read
/// again by the general JSON parser and checked field by field, so that every error message
/// is the one that reader gives.
struct FastHeaderReader {
  private let bytes: UnsafeBufferPointer<UInt8>
  private let dataLength: Int
  private var i = 0

  /// What a sound header holds: its tensors in header order, each name's position among
  /// them, and the metadata.
  struct Entries {
    var tensors: [TensorInfo] = []
    var positions: [String: Int] = [:]
    var metadata: [(String, String)] = []
  }

  /// The entries of `header`, whose data section is `dataLength` bytes, when it is sound.
  ///
  /// Nil when the header is not plain and well formed or an entry fails a check (the general
  /// reader then says which). The tiling of the data section is left to the caller.
  static func read(_ header: [UInt8], dataLength: Int) -> Entries? {
    header.withUnsafeBufferPointer { buffer in
      var reader = FastHeaderReader(bytes: buffer, dataLength: dataLength)
      return reader.document()
    }
  }

  private init(bytes: UnsafeBufferPointer<UInt8>, dataLength: Int) {
    self.bytes = bytes
    self.dataLength = dataLength
  }

  private mutating func document() -> Entries? {
    var entries = Entries()
    var metadata = false
    // An entry takes at least 60 bytes; reserving avoids rehashing a million names.
    entries.positions.reserveCapacity(bytes.count / 60)
    entries.tensors.reserveCapacity(bytes.count / 60)
    guard take(UInt8(ascii: "{")) else { return nil }
    if take(UInt8(ascii: "}")) { return atEnd() ? entries : nil }
    repeat {
      guard let name = string(), take(UInt8(ascii: ":")) else { return nil }
      if name == "__metadata__" {
        guard !metadata, let values = stringObject() else { return nil }
        entries.metadata = values
        metadata = true
      } else {
        guard entries.positions.updateValue(entries.tensors.count, forKey: name) == nil,
          let tensor = tensor(name)
        else { return nil }
        entries.tensors.append(tensor)
      }
    } while take(UInt8(ascii: ","))
    guard take(UInt8(ascii: "}")), atEnd() else { return nil }
    return entries
  }

  /// `{"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}`, fields in any order, with
  /// a known dtype, a shape whose byte size does not overflow and equals the offsets' span,
  /// and offsets inside the data section.
  private mutating func tensor(_ name: String) -> TensorInfo? {
    var dtype: DType?
    var shape: [Int]?
    var offsets: [Int]?
    guard take(UInt8(ascii: "{")) else { return nil }
    repeat {
      guard let key = field(), take(UInt8(ascii: ":")) else { return nil }
      // A field given twice, or whose value does not read, ends the fast path.
      switch key {
      case .dtype where dtype == nil:
        guard let value = string().flatMap(DType.init(safetensorsName:)) else { return nil }
        dtype = value
      case .shape where shape == nil:
        guard let value = integers() else { return nil }
        shape = value
      case .dataOffsets where offsets == nil:
        guard let value = integers() else { return nil }
        offsets = value
      default: return nil
      }
    } while take(UInt8(ascii: ","))
    guard take(UInt8(ascii: "}")), let dtype, let shape, let offsets, offsets.count == 2 else {
      return nil
    }
    var count = 1
    for n in shape {
      let (product, overflow) = count.multipliedReportingOverflow(by: n)
      guard !overflow else { return nil }
      count = product
    }
    let (size, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize)
    let (begin, end) = (offsets[0], offsets[1])
    guard !overflow, begin <= end, end - begin == size, end <= dataLength else { return nil }
    return TensorInfo(name: name, dtype: dtype, shape: shape, dataRange: begin..<end)
  }

  /// An object whose values are strings.
  private mutating func stringObject() -> [(String, String)]? {
    var entries: [(String, String)] = []
    var keys = Set<String>()
    guard take(UInt8(ascii: "{")) else { return nil }
    if take(UInt8(ascii: "}")) { return entries }
    repeat {
      guard let key = string(), take(UInt8(ascii: ":")), let value = string(),
        keys.insert(key).inserted
      else { return nil }
      entries.append((key, value))
    } while take(UInt8(ascii: ","))
    return take(UInt8(ascii: "}")) ? entries : nil
  }

  /// `[1, 2, 3]` of non-negative integers that fit an `Int`.
  private mutating func integers() -> [Int]? {
    var values: [Int] = []
    guard take(UInt8(ascii: "[")) else { return nil }
    if take(UInt8(ascii: "]")) { return values }
    repeat {
      skipSpace()
      var value = 0
      var digits = 0
      while i < bytes.count, bytes[i] >= 0x30, bytes[i] <= 0x39 {
        let (times, o1) = value.multipliedReportingOverflow(by: 10)
        let (sum, o2) = times.addingReportingOverflow(Int(bytes[i] - 0x30))
        guard !o1, !o2 else { return nil }
        value = sum
        digits += 1
        i += 1
      }
      // A leading zero, a fraction or an exponent: not an integer as a header writes one.
      guard digits > 0, digits == 1 || bytes[i - digits] != UInt8(ascii: "0"), i < bytes.count,
        bytes[i] != UInt8(ascii: "."),
        bytes[i] | 0x20 != UInt8(ascii: "e")
      else { return nil }
      values.append(value)
    } while take(UInt8(ascii: ","))
    return take(UInt8(ascii: "]")) ? values : nil
  }

  /// The three fields of a tensor entry.
  private enum Field {
    case dtype, shape, dataOffsets
  }

  /// A tensor entry's field name, compared as bytes (no string is made for it).
  private mutating func field() -> Field? {
    guard let range = stringBytes() else { return nil }
    if matches(range, "dtype") { return .dtype }
    if matches(range, "shape") { return .shape }
    if matches(range, "data_offsets") { return .dataOffsets }
    return nil
  }

  private func matches(_ range: Range<Int>, _ word: StaticString) -> Bool {
    guard range.count == word.utf8CodeUnitCount else { return false }
    let p = word.utf8Start
    for k in 0..<range.count where bytes[range.lowerBound + k] != p[k] { return false }
    return true
  }

  /// A string without escapes or control characters, in valid UTF-8.
  private mutating func string() -> String? {
    guard let range = stringBytes() else { return nil }
    let text = UnsafeBufferPointer(rebasing: bytes[range])
    // Names are nearly always ASCII, which needs no validation.
    if !text.contains(where: { $0 >= 0x80 }) { return String(decoding: text, as: UTF8.self) }
    return String(validating: text, as: UTF8.self)
  }

  /// The bytes between the quotes of a string without escapes or control characters.
  private mutating func stringBytes() -> Range<Int>? {
    guard take(UInt8(ascii: "\"")) else { return nil }
    let start = i
    while i < bytes.count {
      let c = bytes[i]
      if c == UInt8(ascii: "\"") {
        i += 1
        return start..<i - 1
      }
      if c == UInt8(ascii: "\\") || c < 0x20 { return nil }
      i += 1
    }
    return nil
  }

  /// Skips white space, then consumes `byte` if it is next.
  private mutating func take(_ byte: UInt8) -> Bool {
    skipSpace()
    guard i < bytes.count, bytes[i] == byte else { return false }
    i += 1
    return true
  }

  private mutating func skipSpace() {
    while i < bytes.count,
      bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09
    {
      i += 1
    }
  }

  private mutating func atEnd() -> Bool {
    skipSpace()
    return i == bytes.count
  }
}
