import Foundation
import MergeCompiler
import MergeModel
import MergeRecipe
import Testing
import _TestSupport

@testable import MergeRuntime

@Suite struct FailureTests {
  @Test("a run that fails mid-way (an input changes under it) leaves no output folder")
  func failedRun() throws {
    let dir = TemporaryDirectory()
    for m in ["base", "ft0"] {
      for f in ["config.json", "model.safetensors"] {
        try FileManager.default.createDirectory(
          atPath: dir.path + "/" + m, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
          atPath: Repository.tinyLlama + "/\(m)/\(f)", toPath: dir.path + "/\(m)/\(f)")
      }
    }
    let recipe = dir.write(
      "r.yml",
      "merge_method: task_arithmetic\nbase_model: base\nmodels:\n  - model: ft0\n    parameters: {weight: 1}\n"
    )
    let merge = try compileRecipe(recipe)
    // The fine-tune shrinks after its header was read.
    let handle = try FileHandle(
      forWritingTo: URL(fileURLWithPath: dir.path + "/ft0/model.safetensors"))
    try handle.truncate(atOffset: 4096)
    try handle.close()
    let error = try #require(throws: RunError.self) {
      _ = try MergeRunner.run(merge, output: dir.path + "/out", options: RunOptions(threads: 2))
    }
    // Reported like a recipe error, at the model list the failed tensor comes from.
    let rendered = DiagnosticRenderer(sources: [recipe: merge.recipeText]).render(
      error.diagnostic(for: merge, file: recipe))
    #expect(
      rendered
        == "\(recipe):3:1: error: tensor 'lm_head.weight': \(dir.path)/ft0/model.safetensors: the file changed size while it was open\nmodels:\n^~~~~~\n"
    )
    #expect(
      try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == [
        "base", "ft0", "r.yml",
      ])
  }
}

@Suite struct EmptyTensorTests {
  @Test(
    "tensors with no elements (shape [0, 4]) merge with every method that takes two models",
    arguments: [
      "merge_method: arcee_fusion\nbase_model: a\nmodels: [{model: a}, {model: b}]",
      "merge_method: nearswap\nbase_model: a\nmodels: [{model: a}, {model: b}]\nparameters: {t: 0.1}",
      "merge_method: slerp\nbase_model: a\nmodels: [{model: a}, {model: b}]\nparameters: {t: 0.5}",
      "merge_method: ties\nbase_model: a\nmodels: [{model: b, parameters: {weight: 1, density: 0.5}}]",
      "merge_method: sce\nbase_model: a\nmodels: [{model: b}]\nparameters: {select_topk: 0.5}",
      "merge_method: karcher\nmodels: [{model: a}, {model: b}]",
    ])
  func emptyTensors(_ recipe: String) throws {
    let directory = TemporaryDirectory()
    let tensors: [(String, [Int])] = [
      ("model.embed_tokens.weight", [0, 4]), ("model.norm.weight", [4]),
    ]
    writeModelFolder(directory, "a", config: "{}", tensors: tensors)
    writeModelFolder(directory, "b", config: "{}", tensors: tensors)
    let path = directory.write("r.yml", recipe + "\ndtype: float32\n")
    try runRecipe(path, output: directory.path + "/out")
    let out = try loadTensors(directory.path + "/out")
    #expect(out["model.embed_tokens.weight"]?.shape == [0, 4])
    #expect(out["model.embed_tokens.weight"]?.values == [])
  }
}
