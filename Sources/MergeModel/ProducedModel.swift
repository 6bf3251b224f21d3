/// What a file of a model folder holds when a merge produces the folder: bytes made by the
/// merge, or a copy of a file that is on disk.
public enum FileContent: Sendable, Hashable {
  /// These bytes.
  case bytes([UInt8])
  /// The bytes of the file at this path.
  case copy(from: String)

  /// The content's bytes (a copy is read, up to `limit` bytes).
  public func read(limit: Int = ModelFolder.sideFileLimit) throws(ModelError) -> [UInt8] {
    switch self {
    case .bytes(let bytes): return bytes
    case .copy(let source): return try FileSystem.read(source, limit: limit)
    }
  }
}

/// A model that a stage of a multi-stage recipe produces and a later stage reads, without it
/// being written: its config, its side files and the header its weights would have.
///
/// A ``ModelFolder`` made from it is opened like any other; its tensors' bytes exist only
/// while a run computes them (the runtime's stage tensors), never in a file.
public struct ProducedModel: Sendable, Hashable {
  /// The stage's name.
  public var stage: String
  /// config.json as the stage writes it.
  public var config: JSONValue
  /// The side files (tokenizer, generation config, chat template) as the stage writes them.
  public var files: [String: FileContent]
  /// The header of the weights as the stage lays them out.
  public var header: SafetensorsHeader

  /// The path a produced model goes by in messages and keys: no folder has it.
  public static func path(ofStage name: String) -> String { "stage:" + name }

  /// Creates the description of stage `stage`'s output.
  public init(
    stage: String, config: JSONValue, files: [String: FileContent], header: SafetensorsHeader
  ) {
    self.stage = stage
    self.config = config
    self.files = files
    self.header = header
  }
}
