import Foundation
import MergeModel
import Testing
import _TestSupport

@testable import MergeRuntime

/// `merge extract-lora`: LoRA adapters from task vectors, by LAPACK's SVD.
@Suite struct LoraExtractionTests {
  static let models = Repository.parity + "/models/tiny-llama"

  /// ‖τ − B·A‖_F / ‖τ‖_F of every module of `adapter` (as written, after rounding), and over
  /// all of them, by a plain matrix product in f64.
  func reconstructionErrors(adapter: String, finetuned: String) throws -> (
    total: Double, modules: [String: Double]
  ) {
    let base = try loadTensors(Self.models + "/base")
    let fine = try loadTensors(finetuned)
    let weights = try SafetensorsFile(path: adapter + "/adapter_model.safetensors")
    var modules: [String: Double] = [:]
    var lost = 0.0
    var total = 0.0
    for t in weights.header.tensors where t.name.hasSuffix(".lora_A.weight") {
      let stem = String(
        t.name.dropFirst("base_model.model.".count).dropLast(".lora_A.weight".count))
      let a = try weights.tensor(t.name).floats()
      let bInfo = try #require(
        weights.info(t.name.replacingOccurrences(of: "lora_A", with: "lora_B")))
      let b = try weights.tensor(bInfo.name).floats()
      let r = t.shape[0]
      let n = t.shape[1]
      let m = bInfo.shape[0]
      let tb = try #require(base[stem + ".weight"]).values
      let tf = try #require(fine[stem + ".weight"]).values
      var e2 = 0.0
      var n2 = 0.0
      for i in 0..<m {
        for j in 0..<n {
          var ba = 0.0
          for k in 0..<r { ba += Double(b[i * r + k]) * Double(a[k * n + j]) }
          let tau = Double(tf[i * n + j]) - Double(tb[i * n + j])
          e2 += (tau - ba) * (tau - ba)
          n2 += tau * tau
        }
      }
      modules[stem] = n2 > 0 ? (e2 / n2).squareRoot() : 0
      lost += e2
      total += n2
    }
    return ((lost / total).squareRoot(), modules)
  }

  @Test(
    "at a given rank, the reconstruction error is within 2% of mergekit-extract-lora's",
    arguments: ["ft0", "ft1"], [4, 8, 16])
  func againstMergekit(finetuned: String, rank: Int) throws {
    let golden = try JSONValue.parse(
      String(
        contentsOfFile: Repository.parity + "/extract-lora/mergekit-errors.json", encoding: .utf8))
    let theirs = try #require(golden["\(finetuned)/\(rank)"])
    let dir = TemporaryDirectory()
    let summary = try LoraExtraction.extract(
      base: Self.models + "/base", finetuned: Self.models + "/" + finetuned,
      output: dir.path + "/adapter", rank: rank, energy: nil, dtype: nil, threads: 2)
    #expect(summary.modules.count == 28 && summary.modules.allSatisfy { $0.rank == rank })
    let ours = try reconstructionErrors(
      adapter: dir.path + "/adapter", finetuned: Self.models + "/" + finetuned)
    func number(_ v: JSONValue?) -> Double {
      if case .number(let text)? = v { return Double(text) ?? .nan }
      return .nan
    }
    let total = number(theirs["total"])
    #expect(ours.total <= 1.02 * total && ours.total >= 0.98 * total, "\(ours.total) vs \(total)")
    #expect(ours.modules.count == 28)
    for (name, error) in ours.modules {
      let mergekit = number(theirs["modules"]?[name])
      #expect(error <= 1.02 * mergekit, "\(name): \(error) vs mergekit's \(mergekit)")
    }
    // The figure the summary reports (before rounding to bf16) is close to the measured one.
    #expect(abs(summary.relativeError - ours.total) < 0.01)
  }

  @Test("the SVD reconstructs a matrix larger than a block; the leading part agrees with it")
  func svdReference() throws {
    var rng = SplitMix64(state: 11)
    let (m, n) = (300, 170)
    let a = (0..<(m * n)).map { _ in Float.random(in: -1...1, using: &rng) }
    let svd = try LinearAlgebra.svd(a, rows: m, columns: n).get()
    let k = min(m, n)
    #expect(svd.s.count == k)
    #expect(zip(svd.s, svd.s.dropFirst()).allSatisfy { $0 >= $1 } && svd.s.last ?? -1 >= 0)
    var worst = 0.0
    for i in 0..<m {
      for j in 0..<n {
        var v = 0.0
        for l in 0..<k {
          v += Double(svd.u[i * svd.stride + l]) * Double(svd.s[l]) * Double(svd.vt[l * n + j])
        }
        worst = max(worst, abs(v - Double(a[i * n + j])))
      }
    }
    #expect(worst < 1e-4)
    // Uᵀ·U = I (f32).
    for p in 0..<k {
      for q in p..<min(k, p + 3) {
        var dot = 0.0
        for i in 0..<m {
          dot += Double(svd.u[i * svd.stride + p]) * Double(svd.u[i * svd.stride + q])
        }
        #expect(abs(dot - (p == q ? 1 : 0)) < 1e-4)
      }
    }
    // The leading 12 (sgesvdx): the same values, and vectors up to sign.
    let lead = try LinearAlgebra.svd(a, rows: m, columns: n, leading: 12).get()
    #expect(lead.s.count == 12)
    for l in 0..<12 {
      #expect(abs(lead.s[l] - svd.s[l]) <= 1e-4 * svd.s[0])
      var dot = 0.0
      for j in 0..<n { dot += Double(lead.vt[l * n + j]) * Double(svd.vt[l * n + j]) }
      #expect(abs(abs(dot) - 1) < 1e-3, "vector \(l)")
    }
    // Special matrices: zero (all singular values 0), rank one (one nonzero).
    let zero = try LinearAlgebra.svd([Float](repeating: 0, count: 12), rows: 3, columns: 4).get()
    #expect(zero.s == [0, 0, 0])
    let x: [Float] = [1, -2, 3]
    let y: [Float] = [0.5, 4, -1, 2]
    let outer = x.flatMap { xi in y.map { xi * $0 } }
    let one = try LinearAlgebra.svd(outer, rows: 3, columns: 4).get()
    let expected = (x.reduce(0) { $0 + $1 * $1 } * y.reduce(0) { $0 + $1 * $1 }).squareRoot()
    #expect(abs(one.s[0] - expected) < 1e-5 && one.s[1] < 1e-5)
  }

  @Test("--energy keeps the fewest singular values holding E of ‖τ‖², per module")
  func energy() throws {
    let dir = TemporaryDirectory()
    let summary = try LoraExtraction.extract(
      base: Self.models + "/base", finetuned: Self.models + "/ft0", output: dir.path + "/a",
      rank: 64, energy: 0.5, dtype: .float32, threads: 2)
    // Kept at least half of ‖τ‖²: the error is at most √0.5; one value fewer would not be.
    for module in summary.modules {
      #expect(module.relativeError * module.relativeError <= 0.5 + 1e-6, "\(module.name)")
    }
    #expect(Set(summary.modules.map(\.rank)).count > 1)
    let config = try JSONValue.parse(
      String(contentsOfFile: dir.path + "/a/adapter_config.json", encoding: .utf8))
    let maxRank = summary.modules.map(\.rank).max() ?? 0
    #expect(config["r"]?.intValue == maxRank && config["lora_alpha"]?.intValue == maxRank)
    let pattern = try #require(config["rank_pattern"])
    for module in summary.modules where module.rank != maxRank {
      #expect(pattern[module.name]?.intValue == module.rank)
      #expect(config["alpha_pattern"]?[module.name]?.intValue == module.rank)
    }
    // The minimal rank: one singular value fewer holds less than half.
    let base = try ModelFolder(path: Self.models + "/base").openWeights()
    let fine = try ModelFolder(path: Self.models + "/ft0").openWeights()
    let module = try #require(summary.modules.first)
    let tau = LoraExtraction.difference(
      base: try base.tensor(module.name + ".weight"), fine: try fine.tensor(module.name + ".weight")
    )
    let shape = try #require(base.info(module.name + ".weight")).shape
    let s = try LinearAlgebra.svd(tau.map(Float.init), rows: shape[0], columns: shape[1]).get().s
      .map(Double.init)
    let total = s.reduce(0) { $0 + $1 * $1 }
    let held = s.prefix(module.rank - 1).reduce(0) { $0 + $1 * $1 }
    #expect(held < 0.5 * total)
  }

  @Test("the adapter is a recipe source: BASE+ADAPTER at full rank merges back to the fine-tune")
  func mergesBack() throws {
    let workspace = ModelWorkspace(models: Self.models)
    _ = try LoraExtraction.extract(
      base: Self.models + "/base", finetuned: Self.models + "/ft0",
      output: workspace.path("adapter"), rank: 172, energy: nil, dtype: .float32, threads: 2)
    let recipe = workspace.recipe(
      """
      merge_method: passthrough
      slices:
        - sources:
            - {model: models/base+adapter, layer_range: [0, 4]}
      dtype: float32
      """)
    try runRecipe(recipe, output: workspace.path("out"))
    let merged = try loadTensors(workspace.path("out"))
    let fine = try loadTensors(Self.models + "/ft0")
    var worst = 0.0
    for (name, t) in fine {
      let m = try #require(merged[name], "\(name)")
      if name.contains("proj") {
        // Full rank: base + B·A is the fine-tune up to f32 rounding of the factors.
        for (x, y) in zip(m.values, t.values) { worst = max(worst, Double(abs(x - y))) }
      } else {
        // Embeddings, head and norms come whole from the adapter (modules_to_save).
        #expect(m.values == t.values, "\(name)")
      }
    }
    #expect(worst < 1e-5)
  }

  @Test(
    "the adapter loads in PEFT, and merge_and_unload gives base + B·A",
    .requiresPython("peft", "torch", "transformers"))
  func loadsInPEFT() throws {
    let dir = TemporaryDirectory()
    _ = try LoraExtraction.extract(
      base: Self.models + "/base", finetuned: Self.models + "/ft0", output: dir.path + "/adapter",
      rank: 8, energy: nil, dtype: nil, threads: 2)
    let script = """
      import sys, torch
      from transformers import AutoModelForCausalLM
      from peft import PeftModel
      from safetensors.torch import load_file
      base_path, adapter_path, ft_path = sys.argv[1:4]
      model = AutoModelForCausalLM.from_pretrained(base_path, torch_dtype=torch.float32)
      base_q = model.model.layers[1].self_attn.q_proj.weight.detach().clone()
      peft = PeftModel.from_pretrained(model, adapter_path)
      merged = peft.merge_and_unload()
      a = load_file(adapter_path + "/adapter_model.safetensors")
      stem = "base_model.model.model.layers.1.self_attn.q_proj"
      expected = base_q + a[stem + ".lora_B.weight"].float() @ a[stem + ".lora_A.weight"].float()
      got = merged.model.layers[1].self_attn.q_proj.weight.detach()
      print("q_proj", float((got - expected).abs().max()))
      ft = load_file(ft_path + "/model.safetensors")
      emb = merged.model.embed_tokens.weight.detach()
      print("embed", float((emb - ft["model.embed_tokens.weight"].float()).abs().max()))
      """
    let result = try Python.run([
      "-c", script, Self.models + "/base", dir.path + "/adapter", Self.models + "/ft0",
    ])
    #expect(result.status == 0, "\(result.stderr)")
    let figures = Dictionary(
      uniqueKeysWithValues: result.stdout.split(separator: "\n").compactMap { line in
        let parts = line.split(separator: " ")
        return parts.count == 2 ? (String(parts[0]), Double(parts[1]) ?? .nan) : nil
      })
    #expect((figures["q_proj"] ?? .nan) < 1e-5, "\(result.stdout)")
    #expect(figures["embed"] == 0, "\(result.stdout)")
  }

  /// A model folder with f32 tensors `tensors` (name, shape, values).
  func model(_ dir: TemporaryDirectory, _ name: String, _ tensors: [(String, [Int], [Float])])
    -> String
  {
    dir.write(name + "/model.safetensors", bytes: f32SafetensorsBytes(tensors))
    dir.write(name + "/config.json", "{\"model_type\": \"llama\"}")
    return dir.path + "/" + name
  }

  @Test("a τ with non-finite entries, or a linear weight the base lacks, is refused; no output")
  func refusals() throws {
    let dir = TemporaryDirectory()
    let q = "model.layers.0.self_attn.q_proj.weight"
    let base = model(dir, "base", [(q, [2, 3], [0, 0, 0, 0, 0, 0])])
    let nan = model(dir, "nan", [(q, [2, 3], [1, .nan, 0, 0, 2, 0])])
    let other = model(
      dir, "other", [("model.layers.0.self_attn.k_proj.weight", [2, 3], [1, 2, 3, 4, 5, 6])])
    for (fine, message) in [(nan, "not finite"), (other, "no tensor")] {
      do {
        _ = try LoraExtraction.extract(
          base: base, finetuned: fine, output: dir.path + "/out", rank: 2, energy: nil, dtype: nil)
        Issue.record("extracted from \(fine)")
      } catch {
        #expect(error.description.contains(message), "\(error.description)")
      }
      #expect(FileSystem.kind(of: dir.path + "/out") == .missing)
    }
  }
}
