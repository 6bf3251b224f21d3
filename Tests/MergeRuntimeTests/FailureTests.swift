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
    #expect(throws: RunError.self) {
      _ = try MergeRunner.run(merge, output: dir.path + "/out", options: RunOptions(threads: 2))
    }
    #expect(
      try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == [
        "base", "ft0", "r.yml",
      ])
  }
}
