/// A tensor element type, as safetensors names them.
public enum DType: String, Sendable, Hashable, CaseIterable {
  case float64 = "F64"
  case float32 = "F32"
  case float16 = "F16"
  case bfloat16 = "BF16"
  case float8E4M3 = "F8_E4M3"
  case float8E5M2 = "F8_E5M2"
  case int64 = "I64"
  case int32 = "I32"
  case int16 = "I16"
  case int8 = "I8"
  case uint64 = "U64"
  case uint32 = "U32"
  case uint16 = "U16"
  case uint8 = "U8"
  case bool = "BOOL"

  /// The dtype a safetensors header names (`"F16"`, `"BF16"`, `"F32"`, …).
  public init?(safetensorsName: String) {
    self.init(rawValue: safetensorsName)
  }

  /// The dtype a recipe names (`bfloat16`, `float16`, `float32`, `float64`, optionally
  /// `torch.`-prefixed).
  public init?(recipeName: String) {
    var name = recipeName
    if name.hasPrefix("torch.") { name.removeFirst(6) }
    switch name {
    case "bfloat16": self = .bfloat16
    case "float16": self = .float16
    case "float32": self = .float32
    case "float64": self = .float64
    default: return nil
    }
  }

  /// The name safetensors uses.
  public var safetensorsName: String { rawValue }

  /// The name torch and recipes use (`bfloat16`, `float32`, …).
  public var torchName: String {
    switch self {
    case .float64: return "float64"
    case .float32: return "float32"
    case .float16: return "float16"
    case .bfloat16: return "bfloat16"
    case .float8E4M3: return "float8_e4m3fn"
    case .float8E5M2: return "float8_e5m2"
    case .int64: return "int64"
    case .int32: return "int32"
    case .int16: return "int16"
    case .int8: return "int8"
    case .uint64: return "uint64"
    case .uint32: return "uint32"
    case .uint16: return "uint16"
    case .uint8: return "uint8"
    case .bool: return "bool"
    }
  }

  /// Bytes per element.
  public var byteSize: Int {
    switch self {
    case .float64, .int64, .uint64: return 8
    case .float32, .int32, .uint32: return 4
    case .float16, .bfloat16, .int16, .uint16: return 2
    case .float8E4M3, .float8E5M2, .int8, .uint8, .bool: return 1
    }
  }

  /// Whether elements are floating-point numbers (which merging converts to f32).
  public var isFloatingPoint: Bool {
    switch self {
    case .float64, .float32, .float16, .bfloat16, .float8E4M3, .float8E5M2: return true
    default: return false
    }
  }
}
