import Foundation
import MergeModel
import Testing
import _TestSupport

@testable import MergeCLI

@Suite struct RunTests {
  @Test("merge run writes a complete model folder and prints one summary line")
  func run() throws {
    let dir = TemporaryDirectory()
    let out = dir.path + "/merged"
    let cache = TemporaryDirectory()
    let inputs = try Self.snapshot(Repository.parity + "/models/tiny-llama")
    #expect(inputs.count >= 16)
    let result = merge(
      "run", Repository.parity + "/recipes/ties_bf16.yml", out, "--threads", "2", "--cache",
      cache.path)
    #expect(result.status == 0, "\(result.err)")
    #expect(try Self.snapshot(Repository.parity + "/models/tiny-llama") == inputs)
    #expect(result.out.hasPrefix("\(out): 39 tensors, 1 shard, 629.98 KB in "))
    let names = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
    #expect(
      names == [
        "README.md", "config.json", "generation_config.json", "mergekit_config.yml",
        "model.safetensors", "tokenizer.json", "tokenizer_config.json",
      ])
    let card = try String(contentsOfFile: out + "/README.md", encoding: .utf8)
    #expect(
      card.hasPrefix(
        "---\nbase_model: []\nlibrary_name: transformers\ntags:\n- merge\n"
      ))
    // Local folders are named, never by a path of this machine.
    #expect(card.contains("- Base model: `base`\n- Models:\n  - `base`\n  - `ft0`\n  - `ft1`\n"))
    #expect(card.contains("- Method: TIES (`ties`)\n"))
    #expect(card.contains("- Seed: 0\n"))
    #expect(card.contains("```yaml\n# output rounded to bfloat16\nmerge_method: ties\n"))
    let recipe = try String(
      contentsOfFile: Repository.parity + "/recipes/ties_bf16.yml", encoding: .utf8)
    #expect(try String(contentsOfFile: out + "/mergekit_config.yml", encoding: .utf8) == recipe)
    let tokenizer = try Data(contentsOf: URL(fileURLWithPath: out + "/tokenizer.json"))
    #expect(
      tokenizer
        == (try Data(
          contentsOf: URL(fileURLWithPath: Repository.tinyLlama + "/base/tokenizer.json"))))
    // Running again over a previous output needs --force; the selections come from the cache.
    let refused = merge(
      "run", Repository.parity + "/recipes/ties_bf16.yml", out, "--cache", cache.path)
    #expect(refused.status == 1)
    #expect(
      refused.err
        == "error: cannot write '\(out)': it holds a previous merge output; pass --force to replace it\n"
    )
    let again = merge(
      "run", Repository.parity + "/recipes/ties_bf16.yml", out, "--cache", cache.path, "--force")
    #expect(again.status == 0)
    #expect(again.out.hasSuffix("(cached reductions: 78 of 78)\n"))
    #expect(result.out.hasSuffix("(cached reductions: 0 of 78)\n"))
  }

  /// A file's bytes, and its size and modification and change times.
  struct FileState: Equatable {
    var bytes: Data
    var times: String
  }

  /// Every regular file under `folder`.
  static func snapshot(_ folder: String) throws -> [String: FileState] {
    var files: [String: FileState] = [:]
    let enumerator = FileManager.default.enumerator(atPath: folder)
    while let name = enumerator?.nextObject() as? String {
      var st = stat()
      guard stat(folder + "/" + name, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
      files[name] = FileState(
        bytes: try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name)),
        times:
          "\(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) \(st.st_ctim.tv_sec).\(st.st_ctim.tv_nsec)"
      )
    }
    return files
  }

  @Test(
    "merge run refuses to write into an input model's folder or over a folder that is not a merge output"
  )
  func refusals() throws {
    let workspace = ModelWorkspace()
    let dir = workspace.directory
    let recipe = workspace.recipe(
      "merge_method: linear\nmodels:\n  - model: models/ft0\n    parameters: {weight: 1}\n")
    let inside = merge("run", recipe, dir.path + "/models/ft0", "--no-cache")
    #expect(inside.status == 1)
    #expect(
      inside.err
        == "error: cannot write '\(dir.path)/models/ft0': it is or holds the input model folder 'models/ft0'\n"
    )
    let within = merge("run", recipe, dir.path + "/models/ft0/sub", "--no-cache")
    #expect(within.status == 1)
    dir.write("precious/notes.txt", "keep me")
    let other = merge("run", recipe, dir.path + "/precious", "--no-cache")
    #expect(other.status == 1)
    #expect(other.err.contains("exists and is not a merge output"))
    #expect(
      try String(contentsOfFile: dir.path + "/precious/notes.txt", encoding: .utf8) == "keep me")
    let bad = merge("run", recipe, "/nonexistent/x/out", "--no-cache")
    #expect(bad.status == 1)
  }

  @Test("a Llama merged with a model whose config says Mistral is refused without --allow-crimes")
  func mixedArchitectures() throws {
    let dir = TemporaryDirectory()
    for model in ["base", "ft0"] {
      try FileManager.default.copyItem(
        atPath: Repository.tinyLlama + "/" + model, toPath: dir.path + "/" + model)
    }
    let config = dir.path + "/ft0/config.json"
    let text = try String(contentsOfFile: config, encoding: .utf8)
      .replacingOccurrences(of: "LlamaForCausalLM", with: "MistralForCausalLM")
      .replacingOccurrences(of: "\"llama\"", with: "\"mistral\"")
    try FileManager.default.removeItem(atPath: config)
    try text.write(toFile: config, atomically: true, encoding: .utf8)
    let recipe = dir.write(
      "r.yml",
      "merge_method: task_arithmetic\nbase_model: base\nmodels:\n  - model: ft0\n    parameters: {weight: 0.5}\n"
    )
    let refused = merge("run", recipe, dir.path + "/out", "--no-cache")
    #expect(refused.status == 1)
    #expect(
      refused.err.contains(
        "r.yml:4:12: error: 'ft0' is MistralForCausalLM, not LlamaForCausalLM as the model before it; mixing architectures needs --allow-crimes (as in mergekit)"
      ), "\(refused.err)")
    #expect(refused.err.contains("r.yml:2:13: note: 'base' is LlamaForCausalLM"))
    #expect(!FileManager.default.fileExists(atPath: dir.path + "/out"))
    let allowed = merge("run", recipe, dir.path + "/out", "--no-cache", "--allow-crimes")
    #expect(allowed.status == 0, "\(allowed.err)")
    #expect(allowed.err.contains("warning: 'ft0' is MistralForCausalLM"))
    #expect(FileManager.default.fileExists(atPath: dir.path + "/out/model.safetensors"))
  }

  @Test("--allow-unknown lets run and plan go on past an unknown key, with the warning")
  func allowUnknown() throws {
    let workspace = ModelWorkspace()
    let recipe = workspace.recipe(
      "merge_method: linear\nmodels:\n  - model: models/ft0\n    parameters: {weight: 1}\nbogus: 1\n"
    )
    let out = workspace.path("out")
    let strict = merge("run", recipe, out, "--no-cache")
    #expect(strict.status == 1)
    #expect(strict.err.contains("error: unknown key 'bogus' in the recipe"))
    let plan = merge("plan", recipe, "--allow-unknown")
    #expect(plan.status == 0, "\(plan.err)")
    let lenient = merge("run", recipe, out, "--no-cache", "--allow-unknown")
    #expect(lenient.status == 0, "\(lenient.err)")
    #expect(lenient.err.contains("warning: unknown key 'bogus' in the recipe"))
    #expect(FileManager.default.fileExists(atPath: out + "/model.safetensors"))
  }

  @Test(
    "a linear merge whose weights sum to 0 is refused; --allow-nonfinite writes mergekit's NaNs")
  func zeroWeightSum() throws {
    let workspace = ModelWorkspace()
    let recipe = workspace.recipe(
      """
      merge_method: linear
      models:
        - model: models/ft0
          parameters: {weight: 1}
        - model: models/ft1
          parameters: {weight: -1}
      dtype: float32
      """)
    let out = workspace.path("out")
    let refused = merge("run", recipe, out, "--no-cache")
    #expect(refused.status == 1)
    #expect(refused.err.contains("error: the weights sum to 0, so 'normalize' divides every value"))
    #expect(!FileManager.default.fileExists(atPath: out))
    let told = merge("run", recipe, out, "--no-cache", "--allow-nonfinite")
    #expect(told.status == 0, "\(told.err)")
    #expect(told.err.contains("warning: the weights sum to 0"))
    let merged = try SafetensorsFile(path: out + "/model.safetensors")
    let view = try merged.tensor("model.layers.0.mlp.up_proj.weight")
    let values = view.bytes.bindMemory(to: Float.self)
    #expect(values.allSatisfy { !$0.isFinite })
  }

  @Test(
    "a recipe with errors is reported exactly as merge check reports it, and nothing is written")
  func checkFirst() {
    let dir = TemporaryDirectory()
    let recipe = dir.write("r.yml", "merge_method: ties\nmodels:\n  - model: nowhere\n")
    let result = merge("run", recipe, dir.path + "/out", "--no-cache")
    #expect(result.status == 1)
    #expect(result.err == merge("check", recipe).err)
    #expect(!FileManager.default.fileExists(atPath: dir.path + "/out"))
  }

  @Test("killing a run mid-write leaves no output folder, and an old one untouched")
  func interrupted() throws {
    let exe = Repository.mergeExecutable
    try #require(FileManager.default.isExecutableFile(atPath: exe))
    let dir = TemporaryDirectory()
    for existing in [false, true] {
      let out = dir.path + "/out"
      if existing {
        dir.write("out/mergekit_config.yml", "old")
      }
      let process = Process()
      process.executableURL = URL(fileURLWithPath: exe)
      process.arguments = [
        "run", Repository.parity + "/recipes/ties.yml", out, "--quiet", "--no-cache",
        "--threads", "1", "--force",
      ]
      process.standardOutput = FileHandle.nullDevice
      process.standardError = FileHandle.nullDevice
      try process.run()
      // Wait until the run is inside its temporary folder, mid-write: the shard file exists
      // from the first tensor on, and the debug build takes about half a second for all 39.
      var partial: String?
      for _ in 0..<20_000 {
        partial = try FileManager.default.contentsOfDirectory(atPath: dir.path).first {
          $0.hasPrefix(".out.partial-")
        }
        if let partial,
          FileManager.default.fileExists(atPath: dir.path + "/" + partial + "/model.safetensors")
        {
          break
        }
        usleep(500)
      }
      #expect(partial != nil)
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
      if existing {
        #expect(try FileManager.default.contentsOfDirectory(atPath: out) == ["mergekit_config.yml"])
        #expect(try String(contentsOfFile: out + "/mergekit_config.yml", encoding: .utf8) == "old")
      } else {
        #expect(!FileManager.default.fileExists(atPath: out))
      }
      // The next run clears the dead run's leftovers and succeeds.
      #expect(
        merge("run", Repository.parity + "/recipes/ties.yml", out, "--no-cache", "--force").status
          == 0)
      #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out"])
      try FileManager.default.removeItem(atPath: out)
    }
  }

  @Test("shard sizes are read as mergekit reads them")
  func byteCounts() {
    #expect(parseByteCount("5B") == 5_000_000_000)
    #expect(parseByteCount("500M") == 500_000_000)
    #expect(parseByteCount("2GB") == 2_000_000_000)
    #expect(parseByteCount("1.5k") == 1500)
    #expect(parseByteCount("1000000") == 1_000_000)
    #expect(parseByteCount("lots") == nil)
    #expect(parseByteCount("-1M") == nil)
  }

  @Test("merge graph prints the graph of a tensor")
  func graph() {
    let result = merge(
      "graph", Repository.parity + "/recipes/ties.yml", "--tensor", "model.norm.weight")
    #expect(result.status == 0, "\(result.err)")
    #expect(
      result.out == """
        tensor model.norm.weight [64] → F32
          %0 = load #3    ; ../models/tiny-llama/base:model.norm.weight BF16 (base)
          %1 = load #0    ; ../models/tiny-llama/ft0:model.norm.weight BF16
          %2 = load #1    ; ../models/tiny-llama/ft1:model.norm.weight BF16
          %3 = load #2    ; ../models/tiny-llama/ft2:model.norm.weight BF16
          %4 = task_vector %1, %0
          %5 = sort_prefix rank=32 descending %4
          %6 = task_vector %2, %0
          %7 = sort_prefix rank=44 descending %6
          %8 = task_vector %3, %0
          %9 = sort_prefix rank=19 descending %8
          %10 = fused_consensus weights=[1.0, 0.2, 0.5] scales=[-, 0.2, 0.5] normalize=true %0, %1, %2, %3, %5, %7, %9
          %11 = store F32 %10

        """)
    let missing = merge(
      "graph", Repository.parity + "/recipes/ties.yml", "--tensor", "model.norm.weigh")
    #expect(missing.status == 1)
    #expect(
      missing.err
        == "error: the output has no tensor 'model.norm.weigh'; did you mean 'model.norm.weight'?\n1 error\n"
    )
  }
}

/// Multi-stage recipes through the command line.
@Suite struct StageCommandTests {
  @Test(
    "merge run writes the final stage; -I (mergekit-multi's) and --intermediates write the stages")
  func stages() throws {
    let dir = TemporaryDirectory()
    let recipe = Repository.parity + "/recipes/multi_three_stage.yml"
    let plain = merge("run", recipe, dir.path + "/out", "--threads", "2", "--no-cache")
    #expect(plain.status == 0, "\(plain.err)")
    #expect(plain.out.hasPrefix(dir.path + "/out: 57 tensors, 1 shard"))
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["out"])
    let staged = merge(
      "run", recipe, dir.path + "/out2", "-I", dir.path + "/stages", "--no-cache")
    #expect(staged.status == 0, "\(staged.err)")
    #expect(
      try FileManager.default.contentsOfDirectory(atPath: dir.path + "/stages").sorted() == [
        "blend", "tuned",
      ])
    let tuned = try String(
      contentsOfFile: dir.path + "/stages/tuned/mergekit_config.yml", encoding: .utf8)
    #expect(tuned.hasPrefix("name: tuned\nmerge_method: task_arithmetic\n"))
    #expect(
      try Data(contentsOf: URL(fileURLWithPath: dir.path + "/out/model.safetensors"))
        == (try Data(contentsOf: URL(fileURLWithPath: dir.path + "/out2/model.safetensors"))))
  }

  @Test("a cycle is reported at file:line:col, and nothing runs")
  func cycle() throws {
    let dir = TemporaryDirectory()
    dir.link("models", to: Repository.tinyLlama)
    let recipe = dir.write(
      "cycle.yml",
      """
      name: a
      merge_method: linear
      models:
        - model: b
          parameters: {weight: 1}
      ---
      name: b
      merge_method: linear
      models:
        - model: a
          parameters: {weight: 1}
      """)
    let result = merge("run", recipe, dir.path + "/out")
    #expect(result.status == 1)
    #expect(
      result.err.contains(
        "cycle.yml:10:12: error: the stages form a cycle: 'a' reads 'b' reads 'a'"), "\(result.err)"
    )
    #expect(!FileManager.default.fileExists(atPath: dir.path + "/out"))
  }
}
