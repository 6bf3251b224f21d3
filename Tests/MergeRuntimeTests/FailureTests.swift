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
