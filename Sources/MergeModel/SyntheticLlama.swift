import Dispatch
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Llama-shaped bf16 models, generated: what `merge plan --calibrate` measures and
/// `Scripts/bench` merges.
///
/// Writes `base`, `ft0`, `ft1` and `ft2` (two shards each when over 140 MB): the base has uniform weights
/// (layer norms near 1), and fine-tune `m` is the base plus noise of scale `0.004·m` on about
/// 60% of the entries, like the parity models. Deterministic: the same arguments give the
/// same bytes.
public enum SyntheticLlama {
  /// The folder names written.
  public static let names = ["base", "ft0", "ft1", "ft2"]

  /// Writes the four models under `directory`; returns the parameters of each.
  @discardableResult
  public static func write(
    to directory: String, layers: Int = 16, hidden: Int = 1024, vocab: Int = 32000
  ) throws(ModelError) -> Int {
    let intermediate = hidden * 11 / 4
    let heads = 16
    let kvHeads = 8
    let headDim = max(1, hidden / heads)
    func spec(_ name: String, _ shape: [Int]) -> TensorSpec {
      TensorSpec(name: name, dtype: .bfloat16, shape: shape)
    }
    var specs = [spec("model.embed_tokens.weight", [vocab, hidden])]
    for l in 0..<layers {
      let p = "model.layers.\(l)."
      specs += [
        spec(p + "input_layernorm.weight", [hidden]),
        spec(p + "self_attn.q_proj.weight", [hidden, hidden]),
        spec(p + "self_attn.k_proj.weight", [kvHeads * headDim, hidden]),
        spec(p + "self_attn.v_proj.weight", [kvHeads * headDim, hidden]),
        spec(p + "self_attn.o_proj.weight", [hidden, hidden]),
        spec(p + "post_attention_layernorm.weight", [hidden]),
        spec(p + "mlp.gate_proj.weight", [intermediate, hidden]),
        spec(p + "mlp.up_proj.weight", [intermediate, hidden]),
        spec(p + "mlp.down_proj.weight", [hidden, intermediate]),
      ]
    }
    specs += [spec("model.norm.weight", [hidden]), spec("lm_head.weight", [vocab, hidden])]
    let tensors = specs
    let total = specs.reduce(0) { $0 + $1.byteCount }
    let config = """
      {
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": \(hidden),
        "intermediate_size": \(intermediate),
        "model_type": "llama",
        "num_attention_heads": \(heads),
        "num_hidden_layers": \(layers),
        "num_key_value_heads": \(kvHeads),
        "rms_norm_eps": 1e-06,
        "tie_word_embeddings": false,
        "torch_dtype": "bfloat16",
        "vocab_size": \(vocab)
      }

      """
    _ = mkdir(directory, 0o755)
    for (m, name) in names.enumerated() {
      let folder = try OutputFolder(destination: FileSystem.join(directory, name))
      do throws(ModelError) {
        let writer = try SafetensorsWriter(
          folder: folder, layout: ShardLayout(tensors: tensors, shardSize: total / 2 + 70_000_000))
        let failure = Mutex<ModelError?>(nil)
        DispatchQueue.concurrentPerform(iterations: tensors.count) { t in
          let values = generate(tensors[t], index: t, model: m)
          let result = values.withUnsafeBytes { bytes in
            Result { () throws(ModelError) in
              try writer.write(tensor: tensors[t].name, byteOffset: 0, bytes: bytes)
            }
          }
          if case .failure(let error) = result { failure.withLock { $0 = error } }
        }
        if let e = failure.withLock({ $0 }) { throw e }
        try writer.finish()
        try folder.write("config.json", bytes: Array(config.utf8))
        try folder.commit()
      } catch {
        folder.discard()
        throw error
      }
    }
    return specs.reduce(0) { $0 + $1.count }
  }

  static func generate(_ spec: TensorSpec, index t: Int, model m: Int) -> [UInt16] {
    var out = [UInt16](repeating: 0, count: spec.count)
    var baseState = UInt64(t) &* 0x9E37_79B9_7F4A_7C15 &+ 12345
    var noiseState = UInt64(t) &* 0xD1B5_4A32_D192_ED03 &+ UInt64(m) &* 0xABCD_EF01
    let isNorm = spec.shape.count == 1
    let noiseScale: Float = 0.001 * Float(m)
    for i in 0..<spec.count {
      baseState = baseState &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      let u = Float(baseState >> 40) / Float(1 << 24) - 0.5
      var x: Float = isNorm ? 1 + u * 0.1 : u * 0.04
      if m > 0 {
        noiseState = noiseState &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        let r = noiseState >> 40
        if r % 10 < 6 { x += (Float(r >> 4) / Float(1 << 20) - 0.5) * noiseScale * 4 }
      }
      out[i] = FloatConversion.bfloat16(from: x)
    }
    return out
  }
}
