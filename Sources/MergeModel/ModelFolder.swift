/// A Hugging Face–style model folder: config.json, safetensors weights and side files.
///
/// Opening a folder reads only `config.json` and lists the folder; no weights are read.
public struct ModelFolder: Sendable, Hashable {
  /// The folder's path, as given.
  public var path: String
  /// Its parsed config.json.
  public var config: ModelConfig
  /// The safetensors files that hold the weights, sorted, relative to the folder.
  public var weightFiles: [String]
  /// Whether weights are described by `model.safetensors.index.json`.
  public var hasIndex: Bool

  /// Names of files copied from a donor model into the output: tokenizer and generation files.
  public static let sideFileNames: Set<String> = [
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
    "added_tokens.json", "vocab.json", "merges.txt", "vocab.txt", "spiece.model",
    "generation_config.json", "chat_template.jinja", "chat_template.json",
    "preprocessor_config.json",
  ]

  /// The index file's name.
  public static let indexFileName = "model.safetensors.index.json"

  /// Opens the model folder at `path`.
  ///
  /// - Throws: `ModelError.notFound` when nothing is there; `ModelError.notAModel` when the
  ///   folder lacks config.json or safetensors weights; `ModelError.badConfig` when config.json
  ///   is not a JSON object.
  public init(path: String) throws(ModelError) {
    switch FileSystem.kind(of: path) {
    case .missing: throw .notFound(path: path)
    case .file, .other: throw .notAModel(path: path, reason: "it is a file, not a model folder")
    case .directory: break
    }
    let names = try FileSystem.contents(of: path)
    guard names.contains("config.json") else {
      throw .notAModel(path: path, reason: "it has no config.json")
    }
    let configPath = FileSystem.join(path, "config.json")
    self.config = try ModelConfig(bytes: try FileSystem.read(configPath), path: configPath)
    self.path = path
    self.hasIndex = names.contains(Self.indexFileName)
    self.weightFiles = names.filter { $0.hasSuffix(".safetensors") }
    if weightFiles.isEmpty {
      if names.contains(where: {
        $0.hasSuffix(".bin") || $0.hasSuffix(".pt") || $0.hasSuffix(".pth")
      }) {
        throw .notAModel(
          path: path,
          reason: "it holds PyTorch pickle weights (.bin); merge reads safetensors only")
      }
      throw .notAModel(path: path, reason: "it has no .safetensors weights")
    }
  }

  /// The side files present in the folder (tokenizer, generation config, chat template).
  public func sideFiles() -> [String] {
    ((try? FileSystem.contents(of: path)) ?? []).filter { Self.sideFileNames.contains($0) }
  }
}
