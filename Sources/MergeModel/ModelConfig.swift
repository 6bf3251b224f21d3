/// The parts of a Hugging Face `config.json` that merging needs, plus the whole object.
public struct ModelConfig: Sendable, Hashable {
  /// The keys that hold a model's layer count, in the order they are tried.
  public static let layerCountKeys = ["num_hidden_layers", "n_layer", "num_layers", "n_layers"]

  /// The parsed JSON object, kept so that it can be copied to the output with edits.
  public var json: JSONValue

  /// Creates a configuration from a parsed object.
  public init(json: JSONValue) {
    self.json = json
  }

  /// Parses `config.json` bytes.
  ///
  /// - Throws: `ModelError.badConfig` when the text is not a JSON object.
  public init(bytes: [UInt8], path: String) throws(ModelError) {
    let value: JSONValue
    do {
      value = try JSONValue.parse(bytes)
    } catch {
      throw .badConfig(path: path, reason: error.description)
    }
    guard value.objectValue != nil else {
      throw .badConfig(path: path, reason: "not a JSON object")
    }
    self.json = value
  }

  /// The first entry of `architectures` (`LlamaForCausalLM`).
  public var architecture: String? { json["architectures"]?.arrayValue?.first?.stringValue }

  /// Where the layer count lives: the key, and `text_config` when it is nested there.
  public var layerCountPath: (nested: String?, key: String)? {
    for key in Self.layerCountKeys where json[key] != nil { return (nil, key) }
    for nested in ["text_config", "llm_config"] {
      guard let inner = json[nested] else { continue }
      for key in Self.layerCountKeys where inner[key] != nil { return (nested, key) }
    }
    return nil
  }

  /// The number of transformer layers, from the first layer-count key present (looking inside
  /// `text_config` for multimodal models).
  public var layerCount: Int? {
    guard let (nested, key) = layerCountPath else { return nil }
    if let nested { return json[nested]?[key]?.intValue }
    return json[key]?.intValue
  }
}
