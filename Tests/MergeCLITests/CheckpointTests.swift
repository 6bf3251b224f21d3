import Foundation
import Testing
import _TestSupport

/// Models stored as `pytorch_model.bin` merge as their safetensors twins do.
@Suite struct CheckpointTests {
  @Test(
    "a TIES merge of .bin models (one file, and sharded) writes the bytes of the same merge of safetensors"
  )
  func sameMerge() throws {
    let dir = TemporaryDirectory()
    let bins = Repository.parity + "/bin-models"
    let text = """
      merge_method: ties
      base_model: BASE
      models:
        - model: FT0
          parameters: {weight: 0.7, density: 0.5}
        - model: \(Repository.tinyLlama)/ft1
          parameters: {weight: 0.5, density: 0.5}
      dtype: float32

      """
    let bin = dir.write(
      "bin.yml",
      text.replacingOccurrences(of: "BASE", with: bins + "/base")
        .replacingOccurrences(of: "FT0", with: bins + "/ft0-sharded"))
    let safetensors = dir.write(
      "st.yml",
      text.replacingOccurrences(of: "BASE", with: Repository.tinyLlama + "/base")
        .replacingOccurrences(of: "FT0", with: Repository.tinyLlama + "/ft0"))
    for (recipe, out) in [(bin, "a"), (safetensors, "b")] {
      let run = try runProcess(
        Repository.mergeExecutable, ["run", recipe, dir.path + "/" + out, "--no-cache"])
      #expect(run.status == 0, "\(run.stderr)")
    }
    let a = comparableContents(atPath: dir.path + "/a/model.safetensors")
    #expect(
      a != nil && a == comparableContents(atPath: dir.path + "/b/model.safetensors"))
  }

  @Test("a recipe naming the hostile checkpoint is refused by merge check, before anything runs")
  func hostileCheck() throws {
    let dir = TemporaryDirectory()
    let recipe = dir.write(
      "r.yml",
      "merge_method: linear\nmodels:\n  - model: \(Repository.parity)/bin-models/hostile\n    parameters: {weight: 1}\n"
    )
    let check = try runProcess(
      Repository.mergeExecutable, ["check", recipe], currentDirectory: dir.path)
    #expect(check.status == 1)
    #expect(
      check.stderr.contains("r.yml:3:12: error: the model's weights cannot be used: "),
      "\(check.stderr)")
    #expect(check.stderr.contains("its pickle calls posix.system"))
    #expect(!FileManager.default.fileExists(atPath: dir.path + "/PWNED"))
  }
}
