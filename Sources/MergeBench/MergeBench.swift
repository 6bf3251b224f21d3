import Dispatch
import Foundation
import MergeModel
import Synchronization

/// Benchmarks run by `Scripts/bench` (never by the test suite).
public enum MergeBench {
  /// Runs the benchmark named on the command line.
  public static func main() {
    let args = Array(CommandLine.arguments.dropFirst())
    guard let command = args.first else {
      print(
        "usage: merge-bench io [--size GB] [--dir DIR] | generate DIR [--layers N] [--hidden N]")
      exit(64)
    }
    switch command {
    case "io": io(args: Array(args.dropFirst()))
    case "generate": generate(args: Array(args.dropFirst()))
    default:
      print("unknown benchmark '\(command)'")
      exit(64)
    }
  }

  static func option(_ args: [String], _ name: String) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
  }

  static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

  static func shell(_ command: String) -> Double {
    let start = now()
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    try? p.run()
    p.waitUntilExit()
    return now() - start
  }

  /// Writes Llama-shaped bf16 models for benchmarks.
  ///
  /// The models are `base`, `ft0`, `ft1` and `ft2` under DIR (default shape: hidden 1024,
  /// 16 layers, intermediate 2816, 16 heads, 8 KV heads, vocab 32000: 254M parameters, two
  /// shards each). The fine-tunes are the base plus noise on about 60% of the entries.
  /// Deterministic: the same arguments give the same bytes.
  static func generate(args: [String]) {
    guard let dir = args.first, !dir.hasPrefix("--") else {
      print("usage: merge-bench generate DIR [--layers N] [--hidden N]")
      exit(64)
    }
    let layers = Int(option(args, "--layers") ?? "16") ?? 16
    let hidden = Int(option(args, "--hidden") ?? "1024") ?? 1024
    let intermediate = hidden * 11 / 4
    let heads = 16
    let kvHeads = 8
    let headDim = hidden / heads
    let vocab = 32000
    var specs: [TensorSpec] = [
      TensorSpec(name: "model.embed_tokens.weight", dtype: .bfloat16, shape: [vocab, hidden])
    ]
    for l in 0..<layers {
      let p = "model.layers.\(l)."
      specs += [
        TensorSpec(name: p + "input_layernorm.weight", dtype: .bfloat16, shape: [hidden]),
        TensorSpec(name: p + "self_attn.q_proj.weight", dtype: .bfloat16, shape: [hidden, hidden]),
        TensorSpec(
          name: p + "self_attn.k_proj.weight", dtype: .bfloat16, shape: [kvHeads * headDim, hidden]),
        TensorSpec(
          name: p + "self_attn.v_proj.weight", dtype: .bfloat16, shape: [kvHeads * headDim, hidden]),
        TensorSpec(name: p + "self_attn.o_proj.weight", dtype: .bfloat16, shape: [hidden, hidden]),
        TensorSpec(name: p + "post_attention_layernorm.weight", dtype: .bfloat16, shape: [hidden]),
        TensorSpec(
          name: p + "mlp.gate_proj.weight", dtype: .bfloat16, shape: [intermediate, hidden]),
        TensorSpec(
          name: p + "mlp.up_proj.weight", dtype: .bfloat16, shape: [intermediate, hidden]),
        TensorSpec(
          name: p + "mlp.down_proj.weight", dtype: .bfloat16, shape: [hidden, intermediate]),
      ]
    }
    specs += [
      TensorSpec(name: "model.norm.weight", dtype: .bfloat16, shape: [hidden]),
      TensorSpec(name: "lm_head.weight", dtype: .bfloat16, shape: [vocab, hidden]),
    ]
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
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let start = now()
    for (m, name) in ["base", "ft0", "ft1", "ft2"].enumerated() {
      do {
        let folder = try OutputFolder(destination: dir + "/" + name)
        let writer = try SafetensorsWriter(
          folder: folder, layout: ShardLayout(tensors: tensors, shardSize: total / 2 + 70_000_000))
        let failure = Mutex<(any Error)?>(nil)
        DispatchQueue.concurrentPerform(iterations: tensors.count) { t in
          let spec = tensors[t]
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
          do {
            try out.withUnsafeBytes {
              try writer.write(tensor: spec.name, byteOffset: 0, bytes: $0)
            }
          } catch {
            failure.withLock { $0 = error }
          }
        }
        if let e = failure.withLock({ $0 }) { throw e }
        try writer.finish()
        try folder.write("config.json", bytes: Array(config.utf8))
        try folder.commit()
      } catch {
        print("generate failed: \(error)")
        exit(1)
      }
    }
    let parameters = specs.reduce(0) { $0 + $1.count }
    print(
      String(
        format: "generated 4 models of %d parameters (%.0f MB each) in %.1f s", parameters,
        Double(total) / 1e6, now() - start))
  }

  /// Read and write throughput of the safetensors reader and writer on a file of `--size` GB,
  /// against `cat` and `dd` on the same machine, page cache warm for both.
  static func io(args: [String]) {
    let gigabytes = Double(option(args, "--size") ?? "1") ?? 1
    let dir = option(args, "--dir") ?? NSTemporaryDirectory() + "merge-bench-io"
    try? FileManager.default.removeItem(atPath: dir)
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let bytes = Int(gigabytes * 1e9)
    // Llama-like bf16 tensors of 2816 × 1024 (5.8 MB each).
    let elements = 2816 * 1024
    let count = max(1, bytes / (elements * 2))
    let specs = (0..<count).map {
      TensorSpec(
        name: "model.layers.\($0).mlp.up_proj.weight", dtype: .bfloat16, shape: [2816, 1024])
    }
    let total = Double(count * elements * 2)
    print(
      "io benchmark: \(count) bf16 tensors, \(String(format: "%.2f", total / 1e9)) GB, \(ProcessInfo.processInfo.activeProcessorCount) cores"
    )

    // Write: the streaming writer, two threads, each tensor from an f32 buffer rounded to bf16.
    let destination = dir + "/model"
    var start = now()
    do {
      let folder = try OutputFolder(destination: destination)
      let writer = try SafetensorsWriter(
        folder: folder, layout: ShardLayout(tensors: specs, shardSize: 0))
      let failure = Mutex<(any Error)?>(nil)
      DispatchQueue.concurrentPerform(iterations: 2) { worker in
        var source = [Float](repeating: 0, count: elements)
        for i in 0..<elements { source[i] = Float(i % 1000) * 0.001 - 0.5 }
        var out = [UInt16](repeating: 0, count: elements)
        for t in stride(from: worker, to: count, by: 2) {
          for i in 0..<elements { out[i] = FloatConversion.bfloat16(from: source[i] + Float(t)) }
          do {
            try out.withUnsafeBytes {
              try writer.write(tensor: specs[t].name, byteOffset: 0, bytes: $0)
            }
          } catch {
            failure.withLock { $0 = error }
          }
        }
      }
      if let e = failure.withLock({ $0 }) { throw e }
      try writer.finish()
      try folder.commit()
    } catch {
      print("write failed: \(error)")
      exit(1)
    }
    let writeTime = now() - start
    let file = destination + "/model.safetensors"
    let ddTime = shell(
      "dd if=/dev/zero of=\(dir)/dd.bin bs=1M count=\(Int(total / 1_048_576)) 2>/dev/null")
    print(
      String(
        format: "write: merge %.2f s (%.2f GB/s)   dd %.2f s (%.2f GB/s)   ratio %.2f×",
        writeTime, total / writeTime / 1e9, ddTime, total / ddTime / 1e9, writeTime / ddTime))

    // Read: warm the page cache, then time cat and the reader (decode to f32, two threads).
    _ = shell("cat \(file) > /dev/null")
    let catTime = shell("cat \(file) > /dev/null")
    start = now()
    var checksum: Double = 0
    do {
      let weights = try ModelWeights(files: [try SafetensorsFile(path: file)])
      let sums = Mutex<Double>(0)
      let names = weights.tensors.map(\.name)
      DispatchQueue.concurrentPerform(iterations: 2) { worker in
        var buffer = [Float](repeating: 0, count: elements)
        var local: Double = 0
        for t in stride(from: worker, to: names.count, by: 2) {
          guard let view = try? weights.tensor(names[t]) else { continue }
          buffer.withUnsafeMutableBufferPointer { view.decode(0..<view.count, into: $0) }
          local += Double(buffer[elements / 2])
        }
        sums.withLock { $0 += local }
      }
      checksum = sums.withLock { $0 }
    } catch {
      print("read failed: \(error)")
      exit(1)
    }
    let readTime = now() - start
    print(
      String(
        format:
          "read:  merge %.2f s (%.2f GB/s)   cat %.2f s (%.2f GB/s)   ratio %.2f×   (checksum %.1f)",
        readTime, total / readTime / 1e9, catTime, total / catTime / 1e9, readTime / catTime,
        checksum))
  }
}
