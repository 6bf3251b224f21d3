/// Where a tensor sits in a transformer, read from its name.
public enum TensorRole: Sendable, Hashable {
  /// Before the layers: token and position embeddings, and anything not recognised.
  case pre
  /// Inside layer `index`.
  case layer(Int)
  /// After the layers: the final norm and the output head.
  case post
}

/// The naming rules that map tensor names to layers, for Llama, Mistral, Qwen2/3, Gemma,
/// Phi-3 and GPT-2 style checkpoints and anything named like them.
public enum TensorNaming {
  /// The most layers a model may have (the largest models have a few hundred).
  public static let layerLimit = 10_000

  /// The component of `name` that numbers its layer: the first all-digit `.N.` component
  /// (`model.layers.12.mlp…`, `transformer.h.3.attn…`, `blocks.7.…`), as mergekit's inferred
  /// architectures read it.
  public static func layerComponent(of name: String) -> Substring? {
    // The components between the first and the last dot, scanned without splitting.
    let utf8 = name.utf8
    guard let firstDot = utf8.firstIndex(of: UInt8(ascii: ".")) else { return nil }
    var start = utf8.index(after: firstDot)
    while let dot = utf8[start...].firstIndex(of: UInt8(ascii: ".")) {
      let part = utf8[start..<dot]
      if !part.isEmpty && part.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
        return name[start..<dot]
      }
      start = utf8.index(after: dot)
    }
    return nil
  }

  /// The layer index of `name` (its ``layerComponent(of:)``), or nil when it has none or the
  /// number is not below ``layerLimit`` (the checker reports such a name).
  public static func layerIndex(of name: String) -> Int? {
    guard let part = layerComponent(of: name), part.count <= 9, let n = Int(part), n < layerLimit
    else { return nil }
    return n
  }

  /// Names (or name endings) of tensors that come after the layers.
  public static let postNames = [
    "model.norm.weight", "model.norm.bias", "lm_head.weight", "lm_head.bias",
    "transformer.ln_f.weight", "transformer.ln_f.bias", "ln_f.weight", "ln_f.bias",
    "model.final_layernorm.weight", "model.final_layernorm.bias",
    "gpt_neox.final_layer_norm.weight", "gpt_neox.final_layer_norm.bias", "embed_out.weight",
    "transformer.norm_f.weight", "backbone.norm_f.weight", "model.language_model.norm.weight",
    "language_model.model.norm.weight", "language_model.lm_head.weight",
  ]

  /// The role of tensor `name`.
  public static func role(of name: String) -> TensorRole {
    if let i = layerIndex(of: name) { return .layer(i) }
    if postNames.contains(name) || name.hasSuffix("lm_head.weight")
      || name.hasSuffix("lm_head.bias")
    {
      return .post
    }
    return .pre
  }

  /// Whether `name` is the output head that tied-embedding models leave out.
  public static func isOutputHead(_ name: String) -> Bool {
    name.hasSuffix("lm_head.weight") || name == "embed_out.weight"
  }

  /// The number of layers the names span (largest index + 1), 0 when none is in a layer.
  public static func layerCount(of names: some Sequence<String>) -> Int {
    var top = -1
    for name in names {
      if let i = layerIndex(of: name) { top = max(top, i) }
    }
    return top + 1
  }
}
