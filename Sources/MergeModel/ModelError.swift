/// Why a model folder or weights file cannot be used.
public enum ModelError: Error, Sendable, Hashable, CustomStringConvertible {
  /// The path does not exist.
  case notFound(path: String)
  /// The path exists but holds no model (no config.json, or no weights).
  case notAModel(path: String, reason: String)
  /// config.json is not valid.
  case badConfig(path: String, reason: String)
  /// A file could not be read.
  case io(path: String, call: String, errno: Int32)
  /// A safetensors file is malformed; `tensor` names the offending entry, if one.
  case badSafetensors(path: String, tensor: String?, reason: String)
  /// A `model.safetensors.index.json` is malformed or names what is not there.
  case badIndex(path: String, reason: String)
  /// A tensor is not in the model.
  case missingTensor(path: String, tensor: String)
  /// An input path is not a regular file (a folder, a FIFO, a device).
  case notRegularFile(path: String, kind: String)
  /// An input file is larger than the bound for its kind (a recipe, a config, a tokenizer).
  case tooLarge(path: String, limit: Int)
  /// A Hugging Face repository that is not in the hub cache (at the revision asked for).
  case notCached(repository: String, reason: String)
  /// The output folder cannot be written where it was asked for.
  case outputRefused(path: String, reason: String)
  /// The Hugging Face Hub cannot give what a repository needs (network, access, a missing
  /// file, a download that does not match its checksum).
  case hub(repository: String, reason: String)
  /// A tokenizer's files cannot be read as a merge needs them.
  case badTokenizer(path: String, reason: String)
  /// A LoRA adapter folder or its config cannot be used.
  case badAdapter(path: String, reason: String)
  /// A lock file cannot be read.
  case badLock(path: String, reason: String)
  /// A task-vector folder cannot be read or used.
  case badTaskVector(path: String, reason: String)
  /// A system library a command needs cannot be loaded (`library` is what it is for).
  case missingLibrary(library: String, reason: String)

  public var description: String {
    switch self {
    case .notFound(let path): return "'\(path)' does not exist"
    case .notAModel(let path, let reason): return "'\(path)' holds no model: \(reason)"
    case .badConfig(let path, let reason): return "\(path): invalid config.json: \(reason)"
    case .io(let path, let call, let errno):
      return "\(path): \(call) failed: \(errnoDescription(errno))"
    case .badSafetensors(let path, let tensor?, let reason):
      return "\(path): tensor '\(tensor)': \(reason)"
    case .badSafetensors(let path, nil, let reason): return "\(path): \(reason)"
    case .badIndex(let path, let reason): return "\(path): \(reason)"
    case .missingTensor(let path, let tensor): return "\(path): no tensor '\(tensor)'"
    case .notRegularFile(let path, let kind):
      return "'\(path)' is \(kind), not a regular file"
    case .notCached(let repository, let reason):
      return "'\(repository)' is not a local folder, and \(reason)"
    case .tooLarge(let path, let limit):
      let bound = limit >= 1 << 20 ? "\(limit >> 20) MiB" : "\(limit) bytes"
      return "'\(path)' is larger than \(bound), the most merge reads for such a file"
    case .outputRefused(let path, let reason): return "cannot write '\(path)': \(reason)"
    case .hub(let repository, let reason): return "'\(repository)' on the Hub: \(reason)"
    case .badTokenizer(let path, let reason): return "\(path): \(reason)"
    case .badAdapter(let path, let reason):
      return "'\(path)' is not a LoRA adapter merge can apply: \(reason)"
    case .badLock(let path, let reason): return "\(path): not a lock file merge can read: \(reason)"
    case .badTaskVector(let path, let reason): return "\(path): \(reason)"
    case .missingLibrary(let library, let reason): return "\(library) is not available: \(reason)"
    }
  }
}

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// The system's text for an errno value.
func errnoDescription(_ code: Int32) -> String {
  String(cString: strerror(code))
}
