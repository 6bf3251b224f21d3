/// Builds safetensors bytes from a header text and a data section.
public func safetensorsBytes(header: String, data: [UInt8], length: UInt64? = nil) -> [UInt8] {
  let h = Array(header.utf8)
  let n = length ?? UInt64(h.count)
  var out: [UInt8] = (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) }
  out += h
  out += data
  return out
}

/// Malformed safetensors files, and the reason the reader must give for each.
public enum MalformedSafetensors {
  /// One malformed file.
  public struct Case: Sendable, CustomStringConvertible {
    public var name: String
    public var bytes: [UInt8]
    public var message: String
    public var description: String { name }
  }

  static let eight = [UInt8](repeating: 0, count: 8)

  /// Every malformed file issue 3 names, and the message it must produce.
  public static let cases: [Case] = [
    Case(name: "an empty file", bytes: [], message: "the file is empty"),
    Case(
      name: "shorter than 8 bytes", bytes: [1, 2, 3],
      message:
        "the file is 3 bytes, shorter than the 8-byte header length that starts a safetensors file"),
    Case(
      name: "header length past the end",
      bytes: safetensorsBytes(header: "{}", data: [], length: 100),
      message: "the header length 100 runs past the end of the file (10 bytes)"),
    Case(
      name: "header length absurdly large",
      bytes: safetensorsBytes(header: "{}", data: [], length: 1 << 40),
      message:
        "the header length 1099511627776 is larger than the 100000000-byte limit; this is not a safetensors file"
    ),
    Case(
      name: "header not JSON", bytes: safetensorsBytes(header: "{not json}", data: []),
      message: "the header is not valid JSON (expected a string key at byte 9)"),
    Case(
      name: "header not an object", bytes: safetensorsBytes(header: "[1, 2]", data: []),
      message: "the header is not a JSON object"),
    Case(
      name: "data range past the end",
      bytes: safetensorsBytes(
        header: #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: eight),
      message:
        "tensor 'a': data_offsets [0, 16] lies past the end of the data section (8 bytes): the file is truncated"
    ),
    Case(
      name: "overlapping ranges",
      bytes: safetensorsBytes(
        header:
          #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
        data: eight),
      message: "tensor 'b': its bytes [4, 8) overlap those of 'a'"),
    Case(
      name: "shape does not match range",
      bytes: safetensorsBytes(
        header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: eight),
      message: "tensor 'a': its shape [3] of F32 needs 12 bytes, but data_offsets [0, 8] holds 8"),
    Case(
      name: "unknown dtype",
      bytes: safetensorsBytes(
        header: #"{"a":{"dtype":"F12","shape":[2],"data_offsets":[0,8]}}"#, data: eight),
      message: "tensor 'a': unknown dtype 'F12'"),
    Case(
      name: "negative shape",
      bytes: safetensorsBytes(
        header: #"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: eight),
      message: "tensor 'a': its shape [-2] has a negative dimension"),
    Case(
      name: "reversed offsets",
      bytes: safetensorsBytes(
        header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, data: eight),
      message: "tensor 'a': data_offsets [8, 0] is reversed"),
    Case(
      name: "element count overflows",
      bytes: safetensorsBytes(
        header: #"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#,
        data: eight),
      message:
        "tensor 'a': its shape [4294967296, 4294967296] has more elements than can be addressed"),
    Case(
      name: "byte count overflows",
      bytes: safetensorsBytes(
        header: #"{"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}}"#,
        data: eight),
      message: "tensor 'a': its shape [4611686018427387904] has more bytes than can be addressed"),
    Case(
      name: "truncated data section",
      bytes: safetensorsBytes(
        header:
          #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
        data: Array(eight + [0, 0, 0])),
      message:
        "tensor 'b': data_offsets [8, 16] lies past the end of the data section (11 bytes): the file is truncated"
    ),
    Case(
      name: "a hole",
      bytes: safetensorsBytes(
        header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: eight),
      message: "tensor 'a': the data section has a hole at bytes [0, 4) before this tensor"),
    Case(
      name: "trailing bytes",
      bytes: safetensorsBytes(
        header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: eight),
      message: "the data section holds 8 bytes but its tensors account for 4"),
    Case(
      name: "duplicate tensor",
      bytes: safetensorsBytes(
        header:
          #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
        data: eight),
      message: "the header is not valid JSON (duplicate key 'a' at byte 114)"),
    Case(
      name: "a number with a leading zero (not JSON: Python and Rust refuse it)",
      bytes: safetensorsBytes(
        header: #"{"a":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
      message: "the header is not valid JSON (invalid number (a leading zero) at byte 37)"),
    Case(
      name: "a name that is not UTF-8 (refused, not repaired, as Rust's safetensors does)",
      bytes: {
        let header =
          Array(#"{"a"#.utf8) + [0xFF]
          + Array(#"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#.utf8)
        return withUnsafeBytes(of: UInt64(header.count).littleEndian, Array.init) + header
          + [0, 0, 0, 0]
      }(),
      message: "the header is not valid JSON (invalid UTF-8 in string at byte 10)"),
  ]

}

/// A safetensors file of F32 tensors `tensors` (name, shape, values), in the order given.
public func f32SafetensorsBytes(_ tensors: [(String, [Int], [Float])]) -> [UInt8] {
  var entries: [String] = []
  var data: [UInt8] = []
  for (tensor, shape, values) in tensors {
    let start = data.count
    for v in values { data += withUnsafeBytes(of: v.bitPattern.littleEndian, Array.init) }
    entries.append(
      "\"\(tensor)\":{\"dtype\":\"F32\",\"shape\":\(shape),\"data_offsets\":[\(start),\(data.count)]}"
    )
  }
  return safetensorsBytes(header: "{" + entries.joined(separator: ",") + "}", data: data)
}

/// Writes a model folder `name` in `directory`: `config` as config.json, and `tensors` (name,
/// shape) as F32 values `0.01·k` in one `model.safetensors`, in the order given.
@discardableResult
public func writeModelFolder(
  _ directory: TemporaryDirectory, _ name: String, config: String, tensors: [(String, [Int])]
) -> String {
  let bytes = f32SafetensorsBytes(
    tensors.enumerated().map { k, t in
      (t.0, t.1, [Float](repeating: Float(k) * 0.01, count: t.1.reduce(1, *)))
    })
  directory.write(name + "/model.safetensors", bytes: bytes)
  directory.write(name + "/config.json", config)
  return directory.path + "/" + name
}
