import Foundation
import MergeModel
import Testing
import _TestSupport

/// LoRA sources (`model+adapter`): PEFT adapters applied as the merge reads each tensor.
@Suite struct LoraTests {
  static let adapter = Repository.parity + "/loras/tiny-llama-lora"

  static func merge(_ arguments: [String], environment: [String: String] = [:]) throws -> (
    status: Int32, stdout: String, stderr: String
  ) {
    try runProcess(Repository.mergeExecutable, arguments, environment: environment)
  }

  @Test(
    "lora recipes match mergekit: f32 by default, its default run with --lora-merge-dtype bfloat16",
    arguments: ["lora_linear", "lora_task_arithmetic"])
  func parity(_ name: String) throws {
    let dir = TemporaryDirectory()
    let recipe = Repository.parity + "/lora-recipes/\(name).yml"
    let f32 = try Self.merge(["run", recipe, dir.path + "/f32", "--no-cache"])
    #expect(f32.status == 0, "\(f32.stderr)")
    try HubTests.expectParity(dir.path + "/f32", Repository.parity + "/expected/\(name)")
    let native = try Self.merge([
      "run", recipe, dir.path + "/native", "--no-cache", "--lora-merge-dtype", "bfloat16",
    ])
    #expect(native.status == 0, "\(native.stderr)")
    try HubTests.expectParity(dir.path + "/native", Repository.parity + "/expected-native/\(name)")
    // The two differ where the adapter changed the weights, and only there.
    let a = try ModelFolder(path: dir.path + "/f32").openWeights()
    let b = try ModelFolder(path: dir.path + "/native").openWeights()
    for t in a.tensors {
      let same = try a.tensor(t.name).floats() == b.tensor(t.name).floats()
      let adapted = t.name.contains("q_proj") || t.name.contains("v_proj")
      #expect(same == !adapted, "\(t.name)")
    }
  }

  /// Writes an F32 safetensors file of `tensors` at `path`.
  static func writeTensors(_ path: String, _ tensors: [(String, [Int], [Float])]) {
    FileManager.default.createFile(atPath: path, contents: Data(f32SafetensorsBytes(tensors)))
  }

  static func random(_ count: Int, _ rng: inout SplitMix64, scale: Float = 1) -> [Float] {
    (0..<count).map { _ in Float.random(in: -1...1, using: &rng) * scale }
  }

  @Test(
    "an embedding adapter (B·A transposed) and a linear one over tensors of several blocks equal W + s·B·A computed in f64"
  )
  func blocksAgainstReference() throws {
    let dir = TemporaryDirectory()
    var rng = SplitMix64(state: 7)
    // 300 × 250 = 75,000 elements: more than one 64 Ki block, blocks not aligned to rows.
    let (v, d, inner, r) = (300, 250, 280, 3)
    let embed = Self.random(v * d, &rng)
    let down = Self.random(d * inner, &rng)
    try FileManager.default.createDirectory(
      atPath: dir.path + "/model", withIntermediateDirectories: true)
    Self.writeTensors(
      dir.path + "/model/model.safetensors",
      [
        ("model.embed_tokens.weight", [v, d], embed),
        ("model.layers.0.mlp.down_proj.weight", [d, inner], down),
      ])
    dir.write(
      "model/config.json", #"{"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 1}"#)
    let ea = Self.random(r * v, &rng, scale: 0.1)  // lora_embedding_A: [r, vocab]
    let eb = Self.random(d * r, &rng, scale: 0.1)  // lora_embedding_B: [dim, r]
    let la = Self.random(r * inner, &rng, scale: 0.1)  // lora_A: [r, in]
    let lb = Self.random(d * r, &rng, scale: 0.1)  // lora_B: [out, r]
    try FileManager.default.createDirectory(
      atPath: dir.path + "/lora", withIntermediateDirectories: true)
    Self.writeTensors(
      dir.path + "/lora/adapter_model.safetensors",
      [
        ("base_model.model.model.embed_tokens.lora_embedding_A", [r, v], ea),
        ("base_model.model.model.embed_tokens.lora_embedding_B", [d, r], eb),
        ("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight", [r, inner], la),
        ("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight", [d, r], lb),
      ])
    // rsLoRA: scale = alpha / √r; the pattern gives down_proj its own alpha.
    dir.write(
      "lora/adapter_config.json",
      #"{"peft_type": "LORA", "r": 3, "lora_alpha": 6, "use_rslora": true, "alpha_pattern": {"down_proj": 1.5}}"#
    )
    let recipe = dir.write(
      "r.yml", "merge_method: passthrough\nmodels:\n  - model: model+lora\ndtype: float32\n")
    let run = try Self.merge(["run", recipe, dir.path + "/out", "--no-cache", "--threads", "2"])
    #expect(run.status == 0, "\(run.stderr)")
    let out = try ModelFolder(path: dir.path + "/out").openWeights()
    let scale = (6 / Double(3).squareRoot(), 1.5 / Double(3).squareRoot())
    // embed[i, j] += s · Σ_k B[j, k]·A[k, i]
    let gotEmbed = try out.tensor("model.embed_tokens.weight").floats()
    var worst = 0.0
    for i in 0..<v {
      for j in 0..<d {
        var sum = 0.0
        for k in 0..<r { sum += Double(eb[j * r + k]) * Double(ea[k * v + i]) }
        worst = max(
          worst, abs(Double(gotEmbed[i * d + j]) - (Double(embed[i * d + j]) + scale.0 * sum)))
      }
    }
    #expect(worst < 1e-6, "embedding: \(worst)")
    // down[i, j] += s · Σ_k B[i, k]·A[k, j]
    let gotDown = try out.tensor("model.layers.0.mlp.down_proj.weight").floats()
    worst = 0
    for i in 0..<d {
      for j in 0..<inner {
        var sum = 0.0
        for k in 0..<r { sum += Double(lb[i * r + k]) * Double(la[k * inner + j]) }
        worst = max(
          worst, abs(Double(gotDown[i * inner + j]) - (Double(down[i * inner + j]) + scale.1 * sum))
        )
      }
    }
    #expect(worst < 1e-6, "down_proj: \(worst)")
  }

  @Test("special values: a NaN or infinity in W or in a factor reaches only the entries it touches")
  func specialValues() throws {
    let dir = TemporaryDirectory()
    let (rows, columns) = (4, 5)
    var w = [Float](repeating: 1, count: rows * columns)
    w[0] = .nan
    w[1] = .infinity
    var a = [Float](repeating: 0.5, count: columns)  // r = 1
    a[4] = .nan
    let b = [Float](repeating: 2, count: rows)
    try FileManager.default.createDirectory(
      atPath: dir.path + "/m", withIntermediateDirectories: true)
    try FileManager.default.createDirectory(
      atPath: dir.path + "/l", withIntermediateDirectories: true)
    Self.writeTensors(
      dir.path + "/m/model.safetensors", [("model.layers.0.x.weight", [rows, columns], w)])
    dir.write("m/config.json", #"{"num_hidden_layers": 1}"#)
    Self.writeTensors(
      dir.path + "/l/adapter_model.safetensors",
      [
        ("base_model.model.model.layers.0.x.lora_A.weight", [1, columns], a),
        ("base_model.model.model.layers.0.x.lora_B.weight", [rows, 1], b),
      ])
    dir.write("l/adapter_config.json", #"{"r": 1, "lora_alpha": 1}"#)
    let recipe = dir.write("r.yml", "merge_method: passthrough\nmodels:\n  - model: m+l\n")
    let run = try Self.merge(["run", recipe, dir.path + "/out", "--no-cache"])
    #expect(run.status == 0, "\(run.stderr)")
    let got = try ModelFolder(path: dir.path + "/out").openWeights().tensor(
      "model.layers.0.x.weight"
    ).floats()
    #expect(got[0].isNaN)
    #expect(got[1] == .infinity)
    for i in 0..<rows {
      for j in 0..<columns where i * columns + j > 1 {
        if j == 4 {
          #expect(got[i * columns + j].isNaN)
        } else {
          #expect(got[i * columns + j] == 2)
        }
      }
    }
  }

  @Test("adapters that cannot be applied are errors at the adapter's place in the recipe")
  func refusals() throws {
    let dir = TemporaryDirectory()
    let base = Repository.tinyLlama + "/base"
    func adapterCopy(_ name: String, config: String) throws -> String {
      let path = dir.path + "/" + name
      try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
      try FileManager.default.copyItem(
        atPath: Self.adapter + "/adapter_model.safetensors",
        toPath: path + "/adapter_model.safetensors")
      dir.write(name + "/adapter_config.json", config)
      return path
    }
    let cases: [(String, String)] = [
      (dir.path + "/none", "LoRA adapter folder '\(dir.path)/none' does not exist"),
      (
        try adapterCopy("dora", config: #"{"r": 4, "lora_alpha": 8, "use_dora": true}"#),
        "use_dora is true: a DoRA adapter is not supported"
      ),
      (
        try adapterCopy("rank", config: #"{"r": 8, "lora_alpha": 8}"#),
        "the factors have rank 4 and 4, but the config says r = 8"
      ),
      (
        try adapterCopy("ia3", config: #"{"peft_type": "IA3"}"#),
        "its peft_type is IA3; merge applies LoRA adapters only"
      ),
    ]
    for (adapter, message) in cases {
      let recipe = dir.write(
        "r.yml",
        "merge_method: linear\nmodels:\n  - model: \(base)+\(adapter)\n    parameters: {weight: 1}\n"
      )
      let check = try Self.merge(["check", recipe])
      #expect(check.status == 1, "\(adapter)")
      #expect(check.stderr.contains(message), "\(check.stderr)")
      // file:line:column of the adapter's part of the reference.
      #expect(check.stderr.contains("r.yml:3:\(12 + base.count + 1)"), "\(check.stderr)")
    }
    // An adapter made for another model: the shapes do not fit.
    let other = dir.path + "/other"
    try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
    Self.writeTensors(
      other + "/model.safetensors",
      [("model.layers.0.self_attn.q_proj.weight", [8, 8], [Float](repeating: 0, count: 64))])
    dir.write("other/config.json", #"{"num_hidden_layers": 1}"#)
    let recipe = dir.write(
      "r.yml",
      "merge_method: linear\nmodels:\n  - model: \(other)+\(Self.adapter)\n    parameters: {weight: 1}\n"
    )
    let check = try Self.merge(["check", recipe])
    #expect(check.status == 1)
    #expect(
      check.stderr.contains(
        "it adapts 'model.layers.0.self_attn.q_proj.weight' of shape [8, 8] with factors making [64, 64]"
      ), "\(check.stderr)")
    #expect(
      check.stderr.contains(
        "the model has no tensor 'model.layers.1.self_attn.q_proj.weight' to adapt"))
  }

  @Test("the reduction cache tells adapters apart: a changed lora_alpha gives the fresh result")
  func cacheKeys() throws {
    let dir = TemporaryDirectory()
    let adapter = dir.path + "/lora"
    try FileManager.default.copyItem(atPath: Self.adapter, toPath: adapter)
    let recipe = dir.write(
      "r.yml",
      """
      merge_method: ties
      base_model: \(Repository.tinyLlama)/base
      models:
        - model: \(Repository.tinyLlama)/ft0+\(adapter)
          parameters: {weight: 0.7, density: 0.5}
        - model: \(Repository.tinyLlama)/ft1
          parameters: {weight: 0.5, density: 0.5}
      dtype: float32

      """)
    let cache = dir.path + "/cache"
    func run(_ out: String, _ extra: [String]) throws -> Data? {
      let r = try Self.merge(["run", recipe, dir.path + "/" + out] + extra)
      #expect(r.status == 0, "\(r.stderr)")
      return FileManager.default.contents(atPath: dir.path + "/\(out)/model.safetensors")
    }
    let first = try run("a", ["--cache", cache])
    var config = try String(contentsOfFile: adapter + "/adapter_config.json", encoding: .utf8)
    config = config.replacingOccurrences(of: "\"lora_alpha\": 8", with: "\"lora_alpha\": 16")
    try config.write(toFile: adapter + "/adapter_config.json", atomically: true, encoding: .utf8)
    let cached = try run("b", ["--cache", cache])
    let fresh = try run("c", ["--no-cache"])
    #expect(cached == fresh)
    #expect(first != fresh)
  }

  @Test("a whole tensor in the adapter (modules_to_save) replaces the model's; factors still apply")
  func modulesToSave() throws {
    let dir = TemporaryDirectory()
    let adapter = dir.path + "/lora"
    try FileManager.default.copyItem(atPath: Self.adapter, toPath: adapter)
    // The adapter's own factors, plus a new lm_head stored whole (as PEFT saves modules_to_save).
    let factors = try SafetensorsFile(path: adapter + "/adapter_model.safetensors")
    var tensors: [(String, [Int], [Float])] = []
    for t in factors.header.tensors {
      tensors.append((t.name, t.shape, try factors.tensor(t.name).floats()))
    }
    let head = (0..<(1024 * 64)).map { Float($0 % 97) / 97 }
    tensors.append(("base_model.model.lm_head.modules_to_save.default.weight", [1024, 64], head))
    Self.writeTensors(adapter + "/adapter_model.safetensors", tensors)
    let recipe = dir.write(
      "r.yml",
      "merge_method: linear\nmodels:\n  - model: \(Repository.tinyLlama)/base+\(adapter)\n    parameters: {weight: 1}\ndtype: float32\n"
    )
    let run = try Self.merge(["run", recipe, dir.path + "/out", "--no-cache"])
    #expect(run.status == 0, "\(run.stderr)")
    let out = try ModelFolder(path: dir.path + "/out").openWeights()
    #expect(try out.tensor("lm_head.weight").floats() == head)
    let base = try ModelFolder(path: Repository.tinyLlama + "/base").openWeights()
    #expect(
      try out.tensor("model.layers.0.self_attn.q_proj.weight").floats()
        != base.tensor("model.layers.0.self_attn.q_proj.weight").floats())
    #expect(
      try out.tensor("model.layers.0.self_attn.k_proj.weight").floats()
        == base.tensor("model.layers.0.self_attn.k_proj.weight").floats())
  }

  @Test("the mapping form {model, lora} is the same source as MODEL+ADAPTER")
  func mappingForm() throws {
    let dir = TemporaryDirectory()
    let model = Repository.tinyLlama + "/ft0"
    var outputs: [Data?] = []
    for (name, source) in [
      ("plus", "\(model)+\(Self.adapter)"), ("map", "{model: \(model), lora: \(Self.adapter)}"),
    ] {
      let recipe = dir.write(
        name + ".yml",
        "merge_method: linear\nmodels:\n  - model: \(source)\n    parameters: {weight: 1}\ndtype: float32\n"
      )
      let run = try Self.merge(["run", recipe, dir.path + "/" + name, "--no-cache"])
      #expect(run.status == 0, "\(run.stderr)")
      outputs.append(comparableContents(atPath: dir.path + "/\(name)/model.safetensors"))
    }
    #expect(outputs[0] != nil && outputs[0] == outputs[1])
    // The adapter changed the weights.
    #expect(outputs[0] != FileManager.default.contents(atPath: model + "/model.safetensors"))
  }

  @Test("an adapter named by Hugging Face id is read from the hub cache, offline")
  func hubAdapter() throws {
    let dir = TemporaryDirectory()
    let commit = String(repeating: "c", count: 40)
    let repo = dir.path + "/hub/models--someone--tiny-lora"
    try FileManager.default.createDirectory(
      atPath: repo + "/snapshots", withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: Self.adapter, toPath: repo + "/snapshots/" + commit)
    dir.write("hub/models--someone--tiny-lora/refs/main", commit)
    let text =
      "merge_method: linear\nmodels:\n  - model: \(Repository.tinyLlama)/base+ADAPTER\n    parameters: {weight: 1}\ndtype: float32\n"
    let hub = dir.write(
      "hub.yml", text.replacingOccurrences(of: "ADAPTER", with: "someone/tiny-lora"))
    let local = dir.write("local.yml", text.replacingOccurrences(of: "ADAPTER", with: Self.adapter))
    let environment = ["HF_HUB_CACHE": dir.path + "/hub", "HF_HUB_OFFLINE": "1"]
    let a = try Self.merge(["run", hub, dir.path + "/a", "--no-cache"], environment: environment)
    #expect(a.status == 0, "\(a.stderr)")
    let b = try Self.merge(["run", local, dir.path + "/b", "--no-cache"])
    #expect(b.status == 0, "\(b.stderr)")
    #expect(
      comparableContents(atPath: dir.path + "/a/model.safetensors")
        == comparableContents(atPath: dir.path + "/b/model.safetensors"))
  }
}
